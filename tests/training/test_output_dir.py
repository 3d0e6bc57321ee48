"""One writer per output folder (`ptuning.training.output_dir`): the lock, the holder record, and the folders
that are refused before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ptuning.cli import main
from ptuning.training.output_dir import (
    HOLDER_NAME,
    LOCK_NAME,
    OutputDirError,
    OutputLock,
    check_target,
    claim_output_dir,
)

SRC = Path(__file__).resolve().parents[2] / "src"
# a train command that fails only after its output folder is claimed (no such data folder)
TRAIN = ["train", "--task", "sst2", "--quiet", "--max-steps", "1"]


def _train(out, *extra: str) -> list[str]:
    return [*TRAIN, "--output-dir", str(out), *extra]


def _holder_process(folder: Path, *, shared: bool = False) -> subprocess.Popen:
    """Another process holding `folder`'s lock until its stdin closes; returns once it holds it."""
    code = (
        "import sys; from ptuning.training.output_dir import claim_output_dir\n"
        f"with claim_output_dir(sys.argv[1], shared={shared}, command='ptuning train --task rte'):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_second_writer_process_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _holder_process(out)
    try:
        assert main(_train(out)) == 2
        err = _one_line_error(capsys)
        assert f"--output-dir {out} is in use by another ptuning process" in err
        assert f"pid {holder.pid}" in err and "`ptuning train --task rte`" in err and "started 20" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, HOLDER_NAME]  # nothing else written
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # the holder is gone (the kernel dropped its lock with it): the folder is free again
    with claim_output_dir(out):
        assert json.loads((out / HOLDER_NAME).read_text())["pid"] == os.getpid()
    assert list(out.iterdir()) == []  # an exclusive holder takes its lock and record along


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    holder = _holder_process(out)
    holder.kill()
    holder.wait(timeout=30)
    with claim_output_dir(out):  # SIGKILL released the flock: no "in use" from a dead process
        pass


def test_two_threads_one_folder_only_one_writes(tmp_path):
    out = tmp_path / "run"
    results: list[str] = []
    barrier = threading.Barrier(2)
    inside = threading.Event()
    release = threading.Event()

    def writer() -> None:
        barrier.wait()
        try:
            with claim_output_dir(out, command="thread"):
                results.append("held")
                inside.set()
                release.wait(10)
        except OutputDirError as exc:
            results.append(str(exc))
            release.set()

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r == "held" for r in results) == [False, True], results
    assert any("is in use by another ptuning process" in r for r in results)


def test_shared_holders_join_and_exclude_a_writer(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    # tune --resume processes share it; a writer is refused while any holds it
    with OutputLock(out, shared=True), OutputLock(out, shared=True), pytest.raises(OutputDirError):
        OutputLock(out).acquire()
    with OutputLock(out), pytest.raises(OutputDirError, match="in use"):  # a writer excludes joiners
        OutputLock(out, shared=True).acquire()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("file", "is a file: give a folder"),
        ("file/sub", "cannot create it, {tmp}/file is a file"),
        ("/dev/null", "is not a regular folder"),
        ("foreign", "is not empty and holds no ptuning run (notes.txt, photo.jpg)"),
        ("/", "is not empty and holds no ptuning run"),
    ],
)
def test_folders_that_cannot_be_ours_are_one_line_and_untouched(target, expected, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "foreign").mkdir()
    for name in ("notes.txt", "photo.jpg"):
        (tmp_path / "foreign" / name).write_text("mine")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    out = target if target.startswith("/") else str(tmp_path / target)
    assert main(_train(out)) == 2
    err = _one_line_error(capsys)
    assert expected.format(tmp=tmp_path) in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written
    assert not Path("/", LOCK_NAME).exists()


def test_a_foreign_folder_is_written_with_overwrite(tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with claim_output_dir(out, overwrite=True):
        assert (out / LOCK_NAME).is_file()
    assert (out / "notes.txt").read_text() == "mine"


def test_an_immutable_folder_is_one_line_and_nothing_is_left(tmp_path, capsys):
    out = tmp_path / "frozen"
    out.mkdir()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system with attributes)")
    try:
        assert main(_train(out)) == 2
        err = _one_line_error(capsys)
        assert f"--output-dir {out}: cannot write into it (Operation not permitted)" in err
        assert sorted(out.iterdir()) == []
        assert main(_train(out / "sub")) == 2  # a folder to create inside it
        assert "cannot create it (Operation not permitted)" in _one_line_error(capsys)
    finally:
        subprocess.run(["chattr", "-i", str(out)])


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only folders")
def test_a_read_only_folder_is_one_line(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(_train(out)) == 2
        assert "cannot write into it (Permission denied)" in _one_line_error(capsys)
    finally:
        out.chmod(0o755)


def test_a_folder_that_refuses_the_lock_is_one_line_and_a_created_one_is_removed(
    tmp_path, monkeypatch, capsys
):
    """Where the lock file cannot be created (read-only, even for root on a read-only mount) the run
    stops with one line, and the folders it created for it are gone again."""
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(LOCK_NAME):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    out = tmp_path / "new" / "run"
    assert main(_train(out)) == 2
    assert f"--output-dir {out}: cannot write into it (Permission denied)" in _one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_a_failed_run_that_wrote_nothing_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "new"
    args = ["train", "--method", "handcrafted", "--verbalizer", "negative=terrible", "--output-dir", str(out)]
    assert main(args) == 2
    assert "'positive' of task 'sst2' has no word" in _one_line_error(capsys)
    assert not out.exists()


def test_eval_of_an_immutable_checkpoint_prints_the_metrics_and_warns(
    tiny_bert_dir, shared_data, tmp_path, capsys
):
    out = tmp_path / "run"
    args = [
        "train", "--task", "sst2", "--backbone", str(tiny_bert_dir), "--output-dir", str(out), "--quiet",
        "--max-train-samples", "16", "--max-eval-samples", "8", "--batch-size", "8", "--max-steps", "2",
        "--max-seq-length", "32", "--prefix-len", "2",
    ]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system with attributes)")
    try:
        assert main(["eval", "--checkpoint", str(out), "--max-eval-samples", "8"]) == 0
        captured = capsys.readouterr()
        assert "accuracy" in json.loads(captured.out)
        assert captured.err.strip() == (
            f"ptuning eval: warning: metrics not saved: cannot write {out}/eval_sst2_validation.json: "
            "Operation not permitted"
        )
    finally:
        subprocess.run(["chattr", "-i", str(out)])


def test_a_report_holding_only_its_studies_is_ours(tmp_path):
    # a report killed during its first studies holds tuning/<study>/study.db and nothing else
    report = tmp_path / "study-minilm"
    (report / "tuning" / "rte-fine-tune").mkdir(parents=True)
    (report / "tuning" / "rte-fine-tune" / "study.db").write_bytes(b"")
    assert check_target(report) == report
    foreign = tmp_path / "foreign"
    (foreign / "tuning" / "notes").mkdir(parents=True)  # a folder named tuning is not enough
    with pytest.raises(OutputDirError, match="holds no ptuning run"):
        check_target(foreign)
