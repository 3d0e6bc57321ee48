"""A run killed with SIGKILL and resumed ends exactly where an unbroken run ends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ptuning.cli import main
from ptuning.training.trainer import complete_checkpoints
from tests.helpers import kill_when

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


def test_activation_checkpointing_trains_the_same_and_may_change_on_resume(tiny_bert_dir, tmp_path, unbroken):
    """Recomputing the layers in the backward pass changes memory, not the arithmetic: a run with
    --activation-checkpointing ends where the unbroken run ends, and a resume may switch it."""
    out = tmp_path / "run"
    assert main([*_args(tiny_bert_dir, out), "--activation-checkpointing"]) == 0
    assert json.loads((out / "train_config.json").read_text())["activation_checkpointing"] is True
    _assert_same(_final_state(out), unbroken)
    assert main([*_args(tiny_bert_dir, out), "--resume"]) == 0  # no refusal: not a setting of the result


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


def _short(backbone: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--task", "sst2", "--backbone", str(backbone), "--output-dir", str(out), "--quiet",
        "--max-train-samples", "24", "--max-eval-samples", "8", "--batch-size", "8", "--max-steps", "3",
        "--max-seq-length", "32", "--prefix-len", "2", "--seed", "7", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tiny_bert_dir, tmp_path_factory):
    if not Path(os.environ.get("PTUNING_DATA", "")).is_dir():
        pytest.skip("benchmark data folder ../shared/data is not present")
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(_short(tiny_bert_dir, out)) == 0
    return out


def test_the_final_files_carry_one_run_id_and_no_staging_is_left(finished):
    from safetensors import safe_open

    config = json.loads((finished / "ptuning_config.json").read_text())
    settings = json.loads((finished / "train_config.json").read_text())
    with safe_open(str(finished / "prompt.safetensors"), framework="pt") as handle:
        weights_id = handle.metadata()["run_id"]
    assert config["run_id"] == settings["run_id"] == weights_id
    assert not list(finished.glob(".staging-*"))
    # the running run's record, beside the training checkpoints, is the same run
    assert json.loads((finished / "checkpoints" / "train_config.json").read_text())["run_id"] == weights_id


def test_resume_with_other_settings_is_refused_naming_them(finished, tiny_bert_dir, capsys):
    before = (finished / "train_config.json").read_text()
    weights = (finished / "prompt.safetensors").read_bytes()
    assert main([*_short(tiny_bert_dir, finished, "--seed", "6", "--lr", "0.05"), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--resume: " in err and "is a run with other settings" in err
    assert (
        "learning_rate 0.03 there, 0.05 now" in err
    )  # the kind's rate, recorded when it started and "seed 7 there, 6 now" in err
    assert "--resume-with-changes" in err
    assert (finished / "train_config.json").read_text() == before  # nothing rewritten
    assert (finished / "prompt.safetensors").read_bytes() == weights


def test_resume_with_changes_continues_the_same_run(finished, tiny_bert_dir):
    run_id = json.loads((finished / "ptuning_config.json").read_text())["run_id"]
    assert main([*_short(tiny_bert_dir, finished), "--resume"]) == 0  # the run's own settings: fine
    args = [*_short(tiny_bert_dir, finished, "--lr", "0.05"), "--resume", "--resume-with-changes"]
    assert main(args) == 0
    settings = json.loads((finished / "train_config.json").read_text())
    assert settings["learning_rate"] == 0.05 and settings["run_id"] == run_id  # recorded, same run


def test_a_folder_mixing_two_runs_is_refused_on_load(finished, tiny_bert_dir, tmp_path):
    from ptuning.checkpoint import validate_config
    from ptuning.errors import CheckpointError

    other = tmp_path / "other"
    assert main(_short(tiny_bert_dir, other, "--seed", "8")) == 0
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("ptuning_config.json", "train_config.json"):
        (mixed / name).write_bytes((finished / name).read_bytes())
    (mixed / "prompt.safetensors").write_bytes((other / "prompt.safetensors").read_bytes())
    with pytest.raises(
        CheckpointError, match=r"prompt.safetensors is of run \w+, ptuning_config.json of run"
    ):
        validate_config(mixed)
    (mixed / "prompt.safetensors").write_bytes((finished / "prompt.safetensors").read_bytes())
    (mixed / "train_config.json").write_bytes((other / "train_config.json").read_bytes())
    with pytest.raises(CheckpointError, match=r"train_config.json is of run \w+, ptuning_config.json of run"):
        validate_config(mixed)
