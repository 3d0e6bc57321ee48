"""A full disk while saving: one line naming the file, no temporary files, no loadable half checkpoint."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from ptuning.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointWriteError, read_config, save_checkpoint
from ptuning.cli import main
from ptuning.core.config import PromptConfig
from ptuning.errors import CheckpointError
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import tiny_backbone


@pytest.fixture()
def small_disk(tmp_path):
    """A 64 KiB tmpfs, where this process may mount one (root, or a permissive container); else skip."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        # a save that failed mid-write leaves its file open until the exception's reference cycle
        # (traceback -> frame -> exception) is collected; umount would find the disk busy
        gc.collect()
        subprocess.run(["umount", str(mount)], check=False)


def _model(prefix_len: int = 16, seed: int = 0) -> PromptModel:
    torch.manual_seed(seed)
    return PromptModel(
        tiny_backbone("bert"),
        TaskSpec("s", "classification", labels=("a", "b")),
        PromptConfig(prefix_len=prefix_len),
    )


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` until about `leave` bytes are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    filler = folder / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_full_tmpfs_is_one_line_and_keeps_the_old_checkpoint(small_disk):
    folder = small_disk / "ckpt"
    old = _model(prefix_len=4, seed=1)
    save_checkpoint(old, folder)
    _fill(small_disk, leave=4096)
    with pytest.raises(CheckpointWriteError) as caught:
        save_checkpoint(_model(prefix_len=16), folder)  # 3 layers x 64 x 16 floats: more than 4 KiB
    assert str(caught.value) == f"no space left on device writing {folder / WEIGHTS_NAME}"
    assert not _leftovers(folder)
    loaded = PromptModel.from_pretrained(folder, backbone=tiny_backbone("bert"))
    assert loaded.prompt_config.prefix_len == 4
    assert torch.equal(loaded.prefix_encoder.embedding.weight, old.prefix_encoder.embedding.weight)


def test_full_tmpfs_for_a_new_checkpoint_leaves_nothing_loadable(small_disk):
    _fill(small_disk, leave=4096)
    folder = small_disk / "new"
    with pytest.raises(CheckpointWriteError, match="no space left on device writing"):
        save_checkpoint(_model(), folder)
    assert not _leftovers(folder)
    with pytest.raises(CheckpointError):
        read_config(folder)


def test_train_on_a_full_tmpfs_is_one_line(small_disk, tmp_path, tiny_bert_dir, capsys):
    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood film,pos\nbad film,neg\nfine,pos\nawful,neg\n")
    code = main([
        "train", "--backbone", str(tiny_bert_dir), "--train-file", str(data), "--validation-file", str(data),
        "--output-dir", str(small_disk / "out"), "--max-steps", "2", "--batch-size", "2", "--quiet",
    ])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "no space left on device writing" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (small_disk / "out" / CONFIG_NAME).exists()


class _FailingWrites:
    """os.fdopen whose files raise ENOSPC from the `fail_on`-th write of the test on."""

    def __init__(self, fail_on: int) -> None:
        self.fail_on = fail_on
        self.writes = 0
        self.real = os.fdopen

    def __call__(self, fd, *args, **kwargs):
        handle = self.real(fd, *args, **kwargs)
        owner = self
        write = handle.write

        def failing(data):
            owner.writes += 1
            if owner.writes >= owner.fail_on:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return write(data)

        handle.write = failing
        return handle


@pytest.mark.parametrize("fail_on,failed", [(1, WEIGHTS_NAME), (2, CONFIG_NAME)])
def test_enospc_on_either_file_keeps_the_old_checkpoint(tmp_path, monkeypatch, fail_on, failed):
    """The same without a tmpfs: ENOSPC simulated on the weights' or the config's write."""
    folder = tmp_path / "ckpt"
    save_checkpoint(_model(prefix_len=4, seed=1), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr("ptuning.checkpoint.files.os.fdopen", _FailingWrites(fail_on))
    with pytest.raises(CheckpointWriteError) as caught:
        save_checkpoint(_model(prefix_len=16), folder)
    assert str(caught.value) == f"no space left on device writing {folder / failed}"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temporary file, nothing changed
