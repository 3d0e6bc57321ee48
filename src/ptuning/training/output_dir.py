"""One writer per output folder: the checks and the lock that `train`, `tune` and `report` take
before they write anything into their folder.

`claim_output_dir` first checks the folder can be ours (`check_target`: not a file, a device or a
path under a file; not a non-empty folder that holds no ptuning run, unless `overwrite`), then
creates it and takes an OS file lock on `<folder>/.ptuning.lock` (`flock`, released by the kernel
when the process dies, SIGKILL included, so a crashed run never leaves a stale lock). Beside the
lock, `.ptuning.lock.json` records the holder (pid, command, start time) so that a second writer is
refused with one line naming it; both files go when an exclusive holder lets go. Every failure is
an `OutputDirError` (a UserError: one line, exit code 2), raised before anything is written; a
folder the claim created is removed again when the run fails before writing into it.

A lock is exclusive, or shared (`ptuning tune --resume`: several processes share one Optuna study,
whose own storage serialises them; an exclusive writer still waits for none of them and is refused
while any holds it). No torch here: the commands claim their folder before any model code loads.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import secrets
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

LOCK_NAME = ".ptuning.lock"
HOLDER_NAME = ".ptuning.lock.json"
# What a folder of ours holds (any one of them): a run's checkpoint and settings, a search, a report.
# The lock file also marks a folder whose run was killed before it wrote anything else.
OURS = frozenset(
    {
        LOCK_NAME,
        HOLDER_NAME,
        "ptuning_config.json",
        "train_config.json",
        "metrics.json",
        "multitask.json",
        "checkpoints",
        "study.db",
        "best_config.json",
        "search.json",
        "results.jsonl",
        "results.json",
        "report.md",
    }
)

# A report's subfolders: its studies (`tuning/<task>-<method>/study.db`) and its cells' runs. A report
# whose first run got no further than its studies holds only `tuning/`, and must resume from there.
REPORT_PARTS = ("tuning", "_runs")


def _holds_ours(path: Path, entries: list[str]) -> bool:
    if OURS.intersection(entries):
        return True
    for part in REPORT_PARTS:
        if part in entries:
            with contextlib.suppress(OSError):
                if any(
                    OURS.intersection(os.listdir(child))
                    for child in (path / part).iterdir()
                    if child.is_dir()
                ):
                    return True
    return False


try:
    import fcntl
except ImportError:  # Windows: filelock's exclusive lock (no shared mode there)
    fcntl = None  # type: ignore[assignment]


class OutputDirError(UserError):
    """An output folder that cannot be written, is not ours, or is in use (one line)."""


def command_line() -> str:
    """This process's command, as the holder record shows it (`ptuning train --task rte ...`)."""
    argv = sys.argv[1:] if Path(sys.argv[0]).name in ("ptuning", "__main__.py") else sys.argv
    return " ".join(["ptuning", *(shlex.quote(a) for a in argv)])


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_target(
    folder: str | os.PathLike[str], *, overwrite: bool = False, option: str = "--output-dir"
) -> Path:
    """`folder` as a Path once it is known to be a folder we may write (or may create): raises
    OutputDirError naming what is wrong, and writes nothing."""
    path = Path(folder)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            kind = (
                "a file" if path.is_file() else "not a regular folder (a device, a socket or a broken link)"
            )
            raise OutputDirError(f"{option} {path} is {kind}: give a folder")
        try:
            entries = sorted(entry.name for entry in os.scandir(path))
        except OSError as exc:
            raise OutputDirError(f"{option} {path}: cannot list it ({_reason(exc)})") from None
        if entries and not overwrite and not _holds_ours(path, entries):
            shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
            raise OutputDirError(
                f"{option} {path} is not empty and holds no ptuning run ({shown}): give a new or "
                "empty folder, or --overwrite to write into it anyway"
            )
        return path
    for parent in path.absolute().parents:  # the nearest part that exists must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise OutputDirError(f"{option} {path}: cannot create it, {parent} is a file")
            break
    return path


@dataclass(frozen=True)
class Holder:
    """Who holds a folder's lock, as recorded beside it."""

    pid: int | None
    command: str
    started: str

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "pid unknown"
        return f"{pid}, `{self.command}`, started {self.started}"


def read_holder(folder: str | os.PathLike[str]) -> Holder | None:
    """The recorded holder of `folder`'s lock, or None when there is no readable record."""
    try:
        data = json.loads((Path(folder) / HOLDER_NAME).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return Holder(
        pid if isinstance(pid, int) else None, str(data.get("command", "?")), str(data.get("started", "?"))
    )


class OutputLock:
    """The lock of one output folder (the folder must exist). `acquire` never waits: a folder in use
    is an OutputDirError naming the holder."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        shared: bool = False,
        command: str | None = None,
        option: str = "--output-dir",
    ) -> None:
        self.folder = Path(folder)
        self.option = option
        self.shared = shared and fcntl is not None
        self.command = command or command_line()
        self._fd: int | None = None
        self._filelock: Any = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._filelock is not None

    def acquire(self) -> OutputLock:
        path = self.folder / LOCK_NAME
        try:
            if fcntl is not None:
                self._fd = self._flock(path)
            else:
                from filelock import FileLock, Timeout

                lock = FileLock(path, timeout=0, is_singleton=False, thread_local=False)
                try:
                    lock.acquire()
                except Timeout:
                    raise self._in_use() from None
                self._filelock = lock
            self._record()
        except OSError as exc:
            self.release()
            raise OutputDirError(
                f"{self.option} {self.folder}: cannot write into it ({_reason(exc)})"
            ) from None
        return self

    def _flock(self, path: Path) -> int:
        """A descriptor of the lock file, locked. An exclusive holder removes the file when it lets
        go; one who opened it just before locks a file no longer in the folder, so it checks that the
        path is still the file it locked, and tries again if not."""
        for _ in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(path))
                except FileNotFoundError:
                    same = False
            except BlockingIOError:
                os.close(fd)
                raise self._in_use() from None
            except BaseException:
                os.close(fd)
                raise
            if same:
                return fd
            os.close(fd)
        raise OutputDirError(f"{self.option} {self.folder}: its lock file keeps changing; try again")

    def _in_use(self) -> OutputDirError:
        holder = read_holder(self.folder)
        who = f"({holder.describe()})" if holder else "(its record is missing)"
        return OutputDirError(
            f"{self.option} {self.folder} is in use by another ptuning process {who}: wait for it to "
            "finish, or give another --output-dir"
        )

    def _record(self) -> None:
        """Write the holder record (atomically, so a reader never sees half of it)."""
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        text = json.dumps(
            {"pid": os.getpid(), "command": self.command, "started": started, "shared": self.shared}
        )
        tmp = self.folder / f".{HOLDER_NAME}.{secrets.token_hex(4)}.tmp"
        try:
            tmp.write_text(text + "\n")
            os.replace(tmp, self.folder / HOLDER_NAME)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def release(self) -> None:
        if self.held and not self.shared:  # a shared holder leaves the others' record and lock in place
            with contextlib.suppress(OSError):
                (self.folder / HOLDER_NAME).unlink()
            if self._fd is not None:  # removed while still held: see _flock
                with contextlib.suppress(OSError):
                    (self.folder / LOCK_NAME).unlink()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._filelock is not None:
            self._filelock.release()
            self._filelock = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _created_parts(path: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` of `path` would create, deepest first."""
    missing = []
    for part in [path, *path.absolute().parents]:
        if part.exists():
            break
        missing.append(part)
    return missing


@contextlib.contextmanager
def claim_output_dir(
    folder: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    shared: bool = False,
    command: str | None = None,
    option: str = "--output-dir",
) -> Iterator[Path]:
    """Check `folder` (`check_target`), create it, and hold its lock while the block runs. On any
    failure before the block, the folders it created are removed again: nothing is left written."""
    path = check_target(folder, overwrite=overwrite, option=option)
    created = _created_parts(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_created(created)
        if exc.errno == errno.EEXIST:  # a file appeared there meanwhile
            raise OutputDirError(f"{option} {path} is a file: give a folder") from None
        raise OutputDirError(f"{option} {path}: cannot create it ({_reason(exc)})") from None
    lock = OutputLock(path, shared=shared, command=command, option=option)
    try:
        lock.acquire()
    except BaseException:
        _remove_created(created)
        raise
    try:
        yield path
    except BaseException:
        lock.release()
        if created and not any(path.iterdir()):  # refused before it wrote anything: leave no folder
            _remove_created(created)
        raise
    lock.release()


def _remove_created(created: list[Path]) -> None:
    for part in created:
        with contextlib.suppress(OSError):
            for leftover in (LOCK_NAME, HOLDER_NAME):
                (part / leftover).unlink(missing_ok=True)
            part.rmdir()
