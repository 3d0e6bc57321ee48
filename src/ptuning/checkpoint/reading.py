"""Opening a checkpoint's files: only regular files (links resolved), never more than a size cap,
so a FIFO or a link to /dev/zero is refused instead of hanging or filling memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import CheckpointError

# A config holds names, labels and notes: even 100k long labels stay far below this.
MAX_CONFIG_BYTES = 64 * 2**20
# A fine-tune checkpoint carries its backbone: the largest supported one is a few GiB.
MAX_WEIGHTS_BYTES = 64 * 2**30


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_stat(path: Path, info: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a plain file")
        raise CheckpointError(
            f"{path}: not a regular file ({kind}); expected the file `ptuning train` writes"
        )
    if info.st_size > limit:
        raise CheckpointError(
            f"{path}: {info.st_size} bytes, larger than the {limit} a checkpoint file may be"
        )


def check_regular_file(path: str | Path, *, limit: int = MAX_WEIGHTS_BYTES) -> None:
    """Refuse `path` unless it is a regular file (links resolved) of at most `limit` bytes: what a
    file is checked for before a library (safetensors) opens it. FileNotFoundError passes through."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows links: a link to a FIFO or /dev/zero is what it points at
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    _check_stat(path, info, limit)


def read_checkpoint_file(path: str | Path, *, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of one checkpoint file, read only if it is a regular file (links resolved) and
    never more than `limit` bytes (CheckpointError otherwise). FileNotFoundError passes through."""
    path = Path(path)
    check_regular_file(path, limit=limit)
    try:
        # non-blocking: should the file be swapped for a FIFO after the check, opening cannot hang
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        _check_stat(path, os.fstat(fd), limit)
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if size > limit:  # it grew while read
        raise CheckpointError(f"{path}: larger than the {limit} bytes a checkpoint file may be")
    return b"".join(chunks)
