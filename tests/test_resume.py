"""A run killed with SIGKILL and resumed ends exactly where an unbroken run ends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import kill_when
from safetensors.torch import load_file

from ptuning.cli import main
from ptuning.trainer import complete_checkpoints

pytestmark = pytest.mark.slow


def _args(backbone: Path, out: Path) -> list[str]:
    return [
        "train", "--task", "sst2", "--backbone", str(backbone), "--output-dir", str(out), "--quiet",
        "--max-train-samples", "96", "--max-eval-samples", "16", "--batch-size", "8", "--epochs", "2",
        "--save-steps", "4", "--max-seq-length", "32", "--prefix-len", "4", "--seed", "7",
    ]  # fmt: skip


def _final_state(out: Path):
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, load_file(str(out / "prompt.safetensors"))


@pytest.fixture(scope="module")
def unbroken(tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("unbroken")
    assert main(_args(tiny_bert_dir, out)) == 0
    return _final_state(out)


def _assert_same(resumed, unbroken):
    (m1, w1), (m2, w2) = resumed, unbroken
    assert m1["validation"]["accuracy"] == m2["validation"]["accuracy"]
    assert m1["validation"]["loss"] == pytest.approx(m2["validation"]["loss"], abs=1e-6)
    assert m1["global_steps"] == m2["global_steps"]
    assert w1.keys() == w2.keys()
    for key in w1:
        assert (w1[key] - w2[key]).abs().max().item() <= 1e-6, key


def test_killed_after_a_checkpoint_resumes_to_the_same_result(tiny_bert_dir, tmp_path, shared_data, unbroken):
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    # kill once the second checkpoint is complete: at most one save interval (4 steps) is lost
    kill_when(
        _args(tiny_bert_dir, out),
        lambda: len(complete_checkpoints(checkpoints)) >= 2 if checkpoints.is_dir() else False,
    )
    assert not (out / "metrics.json").exists()
    assert main([*_args(tiny_bert_dir, out), "--resume"]) == 0
    _assert_same(_final_state(out), unbroken)


def test_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(
    tiny_bert_dir, tmp_path, shared_data, unbroken
):
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    # kill the moment a checkpoint folder appears, most likely before its files are all written
    kill_when(
        _args(tiny_bert_dir, out), lambda: checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    )
    assert main([*_args(tiny_bert_dir, out), "--resume"]) == 0
    _assert_same(_final_state(out), unbroken)
