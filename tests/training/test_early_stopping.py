"""--epochs auto: train until the validation metric stops improving (--patience, --min-delta), capped
by --max-epochs; TrainConfig.epochs takes a number or "auto". Tiny random BERT on 16 sentences."""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from pathlib import Path

import pytest

from ptuning.cli import main
from ptuning.commands import train as train_command
from ptuning.training.config import TrainConfig
from ptuning.training.defaults import DEFAULTS

WORDS = ["the", "a", "cat", "dog", "film", "plot", "good", "bad", "dull", "bright", "long", "short"]


def _table(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            writer.writerow([" ".join(rng.choices(WORDS, k=5)), ("neg", "pos")[i % 2]])
    return path


def _train(tmp_path: Path, tiny_bert_dir: Path, *extra: str) -> dict:
    """16 training sentences in batches of 8: 2 steps an epoch; 8 validation sentences."""
    out = tmp_path / "run"
    code = main([
        "train", "--backbone", str(tiny_bert_dir), "--output-dir", str(out), "--overwrite",
        "--train-file", str(_table(tmp_path / "t.csv", 16, 1)),
        "--validation-file", str(_table(tmp_path / "d.csv", 8, 2)),
        "--batch-size", "8", "--prefix-len", "4", "--max-seq-length", "16", *extra,
    ])  # fmt: skip
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


def test_auto_stops_once_the_metric_plateaus(tmp_path, tiny_bert_dir, capsys):
    # --lr 1e-12: nothing moves (no prediction changes), so every evaluation scores as the first: it stops after 1 + patience
    metrics = _train(tmp_path, tiny_bert_dir, "--epochs", "auto", "--patience", "2", "--lr", "1e-12")
    assert metrics["stopped_early"] is True
    assert metrics["epochs_done"] == pytest.approx(3.0) and metrics["global_steps"] == 6
    assert metrics["best_epoch"] == pytest.approx(1.0) and metrics["best_step"] == 2
    printed = capsys.readouterr().out
    # the cap unset: the kind of task's (ptuning.training.defaults)
    assert (
        f"epochs auto (at most {DEFAULTS['sentence'].max_epochs} epochs of 2 steps; stops after 2 evaluations"
        in printed
    )
    cap = DEFAULTS["sentence"].max_epochs
    assert f"epoch 3 of {cap}: accuracy" in printed and f"epoch 4 of {cap}" not in printed
    assert "stopped early at epoch 3: accuracy did not improve in 2 evaluations (best " in printed
    summary = json.loads(printed[printed.index("{\n") : printed.rindex("}") + 1])
    assert summary["stopped_early"] is True and summary["best_epoch"] == pytest.approx(1.0)


def test_evaluations_before_min_epochs_do_not_count(tmp_path, tiny_bert_dir, capsys):
    # nothing moves (lr 1e-12): without --min-epochs it stops at epoch 1 + 2; with --min-epochs 4
    # the evaluations of epochs 1-3 do not count, so epochs 4 and 5 are the two without a gain
    metrics = _train(
        tmp_path, tiny_bert_dir, "--epochs", "auto", "--patience", "2", "--min-epochs", "4", "--lr", "1e-12",
    )  # fmt: skip
    assert metrics["stopped_early"] is True and metrics["epochs_done"] == pytest.approx(5.0)
    assert metrics["best_epoch"] == pytest.approx(1.0)  # the best is still chosen from every epoch
    assert "stops after 2 evaluations without a gain over 0, counted from epoch 4)" in capsys.readouterr().out


def test_a_resumed_run_keeps_its_min_epochs(tmp_path, tiny_bert_dir):
    # cut after 2 epochs and resumed: the restored early stopping still waits for epoch 4
    auto = ("--epochs", "auto", "--patience", "2", "--min-epochs", "4", "--lr", "1e-12", "--quiet")
    first = _train(tmp_path, tiny_bert_dir, *auto, "--max-steps", "4")
    assert first["epochs_done"] == pytest.approx(2.0)
    resumed = _train(tmp_path, tiny_bert_dir, *auto, "--resume", "--resume-with-changes")
    assert resumed["stopped_early"] is True and resumed["epochs_done"] == pytest.approx(5.0)


def test_the_max_epochs_cap_holds(tmp_path, tiny_bert_dir):
    metrics = _train(
        tmp_path, tiny_bert_dir, "--epochs", "auto", "--patience", "5", "--max-epochs", "2", "--lr", "1e-12",
        "--quiet",
    )  # fmt: skip
    assert metrics["stopped_early"] is False
    assert metrics["epochs_done"] == pytest.approx(2.0) and metrics["global_steps"] == 4


def test_a_resumed_run_goes_on_counting_evaluations_without_a_gain(tmp_path, tiny_bert_dir):
    # cut after 2 epochs (best at epoch 1, one evaluation without a gain), then resumed: with the
    # count restored it stops at epoch 4, as an uninterrupted run does; counted afresh, at epoch 5
    auto = ("--epochs", "auto", "--patience", "3", "--lr", "1e-12", "--quiet")
    first = _train(tmp_path, tiny_bert_dir, *auto, "--max-steps", "4")
    assert first["epochs_done"] == pytest.approx(2.0)
    resumed = _train(
        tmp_path, tiny_bert_dir, *auto, "--resume", "--resume-with-changes"
    )  # no --max-steps now
    assert resumed["stopped_early"] is True
    assert resumed["epochs_done"] == pytest.approx(4.0) and resumed["best_epoch"] == pytest.approx(1.0)


def test_a_fixed_epoch_count_never_stops_early(tmp_path, tiny_bert_dir):
    metrics = _train(tmp_path, tiny_bert_dir, "--epochs", "3", "--lr", "1e-12", "--quiet")
    assert metrics["stopped_early"] is False and metrics["epochs_done"] == pytest.approx(3.0)


def test_early_stopping_is_wired_only_for_auto(tmp_path):
    from transformers import EarlyStoppingCallback

    from ptuning.tasks import TaskSpec
    from ptuning.training.trainer import WallClock, run_callbacks, training_arguments

    spec = TaskSpec("t", "classification", ("neg", "pos"), "accuracy")
    auto = TrainConfig(epochs="auto", patience=4, min_delta=0.01, max_epochs=7, report_to="none")
    stoppers = [
        c for c in run_callbacks(auto, tmp_path, WallClock(None)) if isinstance(c, EarlyStoppingCallback)
    ]
    assert [(s.early_stopping_patience, s.early_stopping_threshold) for s in stoppers] == [(4, 0.01)]
    args = training_arguments(auto, spec, tmp_path / "checkpoints", steps_per_epoch=10)
    assert args.num_train_epochs == 7  # the cap
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_accuracy"
    assert args.warmup_steps == math.ceil(0.06 * 70)  # the schedule is planned over the cap
    fixed = TrainConfig(epochs=2, report_to="none")
    assert not any(
        isinstance(c, EarlyStoppingCallback) for c in run_callbacks(fixed, tmp_path, WallClock(None))
    )
    assert training_arguments(fixed, spec, tmp_path, steps_per_epoch=10).num_train_epochs == 2


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_epochs_take_a_number_or_auto():
    assert train_command.config_from_args(_parse("--epochs", "auto")).epochs == "auto"
    assert train_command.config_from_args(_parse("--epochs", "2.5")).epochs == 2.5
    assert TrainConfig(epochs=" Auto ").epochs == "auto" and TrainConfig(epochs="auto").auto_epochs
    assert TrainConfig(epochs=3).planned_epochs == 3.0
    assert TrainConfig(epochs="auto", max_epochs=7).planned_epochs == 7.0
    assert TrainConfig.build(task="rte").epochs == "auto"  # unset: auto (the main job has its own count)
    with pytest.raises(SystemExit):
        _parse("--epochs", "many")
    for bad in ("three", [3], True):
        with pytest.raises(TypeError, match="epochs must be a number or 'auto'"):
            TrainConfig(epochs=bad)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="epochs must be > 0"):
            TrainConfig(epochs=bad)


def test_early_stopping_settings_are_checked():
    with pytest.raises(ValueError, match="patience must be >= 1"):
        TrainConfig(epochs="auto", patience=0)
    with pytest.raises(TypeError, match="patience must be an integer"):
        TrainConfig(patience=2.5)
    with pytest.raises(ValueError, match="max_epochs must be >= 1"):
        TrainConfig(max_epochs=0)
    with pytest.raises(ValueError, match="min_epochs must be >= 0"):
        TrainConfig(min_epochs=-1)
    with pytest.raises(ValueError, match=r"min_epochs \(9\) must not exceed max_epochs \(5\)"):
        TrainConfig(epochs="auto", min_epochs=9, max_epochs=5)
    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        TrainConfig(min_delta=-0.1)
    with pytest.raises(ValueError, match="report_to must be one of"):
        TrainConfig(report_to="comet")


def test_auto_through_a_config_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"epochs": "auto", "patience": 2}))
    cfg = train_command.config_from_args(train_command.with_config_file(_parse("--config", str(path))))
    assert (cfg.epochs, cfg.patience) == ("auto", 2)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # train_config.json
    path.write_text(json.dumps({"epochs": "forever"}))
    with pytest.raises(Exception, match="epochs"):
        train_command.with_config_file(_parse("--config", str(path)))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--patience", "5"], "--patience goes with --epochs auto"),
        (["--min-epochs", "5"], "--min-epochs goes with --epochs auto"),
        (["--max-epochs", "9", "--min-delta", "0.1"], "--min-delta, --max-epochs go with --epochs auto"),
        (["--epochs", "auto", "--method", "handcrafted"], "--method handcrafted"),
        (["--epochs", "auto", "--patience", "0"], "patience must be >= 1"),
    ],
)
def test_early_stopping_misuse_is_a_one_line_error(argv, needle, capsys):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_the_kept_model_is_the_best_epochs_not_the_last(tmp_path, tiny_bert_dir):
    """A run whose best epoch is not its last: the model it saves, scored again, gives the best
    epoch's logged loss, not the last epoch's (a best checkpoint that failed to load back would
    leave the last epoch's weights and report them as the best)."""
    from ptuning.training.trainer import CHECKPOINTS, complete_checkpoints

    metrics = _train(
        tmp_path, tiny_bert_dir, "--epochs", "auto", "--patience", "3", "--max-epochs", "6", "--lr", "3e-1",
        "--seed", "3",
    )  # fmt: skip
    run = tmp_path / "run"
    history = json.loads((complete_checkpoints(run / CHECKPOINTS)[-1] / "trainer_state.json").read_text())
    evals = {round(e["epoch"]): e for e in history["log_history"] if "eval_loss" in e}
    best, last = round(metrics["best_epoch"]), max(evals)
    assert best != last, evals  # the case under test: the run went on past its best epoch
    kept = metrics["validation"]["loss"]
    assert kept == pytest.approx(evals[best]["eval_loss"], rel=1e-4), (kept, evals)
    assert kept != pytest.approx(evals[last]["eval_loss"], rel=1e-4)
