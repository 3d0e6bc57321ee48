"""End-to-end CLI: train a few steps on a slice of each task family, then eval and predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptuning.cli import main

FAMILIES = {
    "sst2": ["a gripping, funny film", "dull and overlong"],
    "rte": [{"text": "A man is sleeping.", "text_pair": "A person rests."}],
    "copa": [
        {
            "context": "The man broke his toe. What was the CAUSE of this?",
            "choices": ["He dropped a hammer.", "He sang."],
        }
    ],
    "conll03": [{"tokens": ["John", "lives", "in", "Berlin", "."]}, "EU rejects German call"],
    "squad": [{"question": "Where does John live?", "context": "John lives in Berlin with his cat."}],
}


def _train(tmp_path, tiny_bert_dir, task, *extra):
    out = tmp_path / task
    args = [
        "train", "--task", task, "--backbone", str(tiny_bert_dir), "--output-dir", str(out),
        "--max-train-samples", "24", "--max-eval-samples", "12", "--max-steps", "3", "--batch-size", "8",
        "--max-seq-length", "64", "--prefix-len", "4", "--quiet", *extra,
    ]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.mark.parametrize("task", sorted(FAMILIES))
def test_train_eval_predict(task, tmp_path, tiny_bert_dir, shared_data, capsys):
    out = _train(tmp_path, tiny_bert_dir, task)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "task",
        "method",
        "backbone",
        "trainable_params",
        "total_params",
        "train_seconds",
        "validation",
    ):
        assert key in metrics, key
    assert metrics["task"] == task and metrics["method"] == "p-tuning-v2"
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    primary = metrics["metric"]
    assert primary in metrics["validation"]
    assert (out / "prompt.safetensors").is_file() and (out / "ptuning_config.json").is_file()
    assert metrics["checkpoint_bytes"] == (out / "prompt.safetensors").stat().st_size

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--max-eval-samples", "12"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    # the saved best checkpoint reproduces the metric recorded at the end of training
    assert evaluated[primary] == pytest.approx(metrics["validation"][primary], abs=1e-6)
    assert (out / f"eval_{task}_validation.json").is_file()

    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps(x) + "\n" for x in FAMILIES[task]))
    predictions = tmp_path / "predictions.jsonl"
    assert (
        main(["predict", "--checkpoint", str(out), "--input", str(inputs), "--output", str(predictions)]) == 0
    )
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == len(FAMILIES[task])
    for row in rows:
        if task in ("sst2", "rte"):
            assert row["label"] in row["probabilities"]
            assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        elif task == "copa":
            assert row["label"] in (0, 1) and len(row["probabilities"]) == 2
        elif task == "conll03":
            assert len(row["tags"]) == len(row["tokens"])
            assert all({"type", "start", "end", "text"} <= set(e) for e in row["entities"])
        else:
            context = FAMILIES["squad"][0]["context"]
            assert context[row["start"] : row["end"]] == row["answer"]


def test_predict_texts_on_command_line(tmp_path, tiny_bert_dir, shared_data, capsys):
    out = _train(tmp_path, tiny_bert_dir, "sst2", "--method", "prompt-tuning")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "great", "awful"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["label"] in ("negative", "positive") for line in lines)


@pytest.mark.parametrize("method", ["prefix-tuning", "fine-tune"])
def test_other_methods_train_and_reload(method, tmp_path, tiny_bert_dir, shared_data, capsys):
    out = _train(tmp_path, tiny_bert_dir, "sst2", "--method", method)
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--max-eval-samples", "12"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(metrics["validation"]["accuracy"], abs=1e-6)
    if method == "fine-tune":
        assert metrics["trainable_params"] == metrics["total_params"]


def test_help_for_every_command(capsys):
    from ptuning.cli import available_commands

    for name in available_commands():
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: ptuning " + name in capsys.readouterr().out


# --- a quiet, quick command line ---------------------------------------------------------------

ARGUMENT_ERRORS = {
    "missing file": (["--train-file", "missing.csv", "--validation-file", "dev.csv"], "missing.csv: file not found"),
    "missing column": (["--train-file", "dev.csv", "--validation-file", "dev.csv", "--text-column", "review"],
                       "missing column 'review'"),
    "jsonl key": (["--train-file", "dev.jsonl", "--validation-file", "dev.jsonl", "--label-column", "gold"],
                  "missing key 'gold'; keys found: text, label"),
    "file type": (["--train-file", "dev.txt", "--validation-file", "dev.csv"], "unsupported file type '.txt'"),
    "validation alone": (["--validation-file", "dev.csv"], "--validation-file needs --train-file"),
    "split": (["--train-file", "dev.csv", "--validation-split", "1.5"], "--validation-split must be a share"),
    "range": (["--batch-size", "0"], "--batch-size must be >= 1"),
    "warmup": (["--warmup-ratio", "1.5"], "--warmup-ratio"),
    "init-from": (["--init-from", "nowhere"], "--init-from nowhere: not a ptuning checkpoint (no such folder)"),
    "bad epochs": (["--epochs", "lots"], "expected a number, none or auto, got 'lots'"),
}  # fmt: skip


def test_argument_errors_come_before_torch_loads(tmp_path):
    """Each error is one line with exit code 2, raised before torch or transformers is imported
    (importing them takes seconds; bench/bench_cli_startup.py times it)."""
    import subprocess
    import sys

    (tmp_path / "dev.csv").write_text("text,label\nfine,pos\n")
    (tmp_path / "dev.jsonl").write_text('{"text": "fine", "label": "pos"}\n')
    (tmp_path / "dev.txt").write_text("fine\tpos\n")
    cases = dict(ARGUMENT_ERRORS)
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        cases["reporter"] = (["--report-to", "wandb"], "needs the wandb package: pip install wandb")
    probe = (
        "import json, sys\n"
        "from ptuning.cli import main\n"
        "try:\n"
        "    code = main(json.loads(sys.argv[1]))\n"
        "except SystemExit as exc:  # argparse's own errors\n"
        "    code = exc.code\n"
        "print(json.dumps([code, 'torch' in sys.modules, 'transformers' in sys.modules]))\n"
    )
    import os

    import ptuning

    env = {**os.environ, "PYTHONPATH": str(Path(ptuning.__file__).parents[1])}  # this checkout's ptuning
    env.pop("PTUNING_DATA", None)
    for name, (argv, needle) in cases.items():
        done = subprocess.run(
            [sys.executable, "-c", probe, json.dumps(["train", *argv])],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stdout.strip(), (name, done.stderr)
        code, torch_loaded, transformers_loaded = json.loads(done.stdout.strip().splitlines()[-1])
        err = (
            done.stderr.strip().splitlines()[-1]
            if code == 2 and "usage:" in done.stderr
            else done.stderr.strip()
        )
        assert code == 2 and len(err.splitlines()) == 1 and needle in err, (name, err)
        assert not torch_loaded and not transformers_loaded, name


def test_a_run_logs_one_line_per_epoch_and_the_final_metrics_once(tmp_path, tiny_bert_dir, capsys):
    """stdout is not a terminal here: no progress bars, no log dicts; eval reports no epoch."""
    train = tmp_path / "tickets_train.csv"
    train.write_text("text,label\n" + "".join(f"w{i} film,{'pos' if i % 2 else 'neg'}\n" for i in range(16)))
    dev = tmp_path / "tickets_dev.csv"
    dev.write_text("text,label\na film,pos\nno film,neg\n")
    out = tmp_path / "run"
    assert main([
        "train", "--backbone", str(tiny_bert_dir), "--train-file", str(train), "--validation-file", str(dev),
        "--output-dir", str(out), "--batch-size", "16", "--prefix-len", "4", "--epochs", "2",
        "--logging-steps", "1",
    ]) == 0  # fmt: skip
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "epochs 2 (2 steps)" in captured.out and "train 16 examples" in captured.out
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1 of 2", "epoch 2 of 2"], lines
    assert (
        "accuracy" in epoch_lines[0] and "(best so far)" in epoch_lines[0] and "train loss" in epoch_lines[0]
    )
    assert "{'" not in captured.out + captured.err  # no Trainer log dicts
    assert "it/s" not in captured.err  # no progress bar
    assert captured.out.count('"accuracy"') == 1  # the final metrics, printed once
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "tickets"  # tickets_train.csv names the task "tickets"

    assert main(["eval", "--checkpoint", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert "epoch" not in evaluated and evaluated["task"] == "tickets"
    assert (out / "eval_tickets_validation.json").is_file()


def test_quiet_prints_the_final_metrics_only(tmp_path, tiny_bert_dir, capsys):
    _train(tmp_path, tiny_bert_dir, "sst2")
    out = capsys.readouterr().out
    assert not any(line.startswith("epoch ") for line in out.splitlines())
    assert out.count('"accuracy"') == 1


def test_a_terminal_gets_one_bar_and_quiet_nothing():
    from ptuning.training.config import TrainConfig
    from ptuning.training.trainer import ProgressLines, progress_callbacks

    (shown,) = progress_callbacks(TrainConfig(), terminal=True)
    assert isinstance(shown, ProgressLines) and shown.bar
    (logged,) = progress_callbacks(TrainConfig(), terminal=False)
    assert not logged.bar
    assert progress_callbacks(TrainConfig(progress=False), terminal=True) == []


def test_report_to_reaches_the_trainer(tmp_path):
    from transformers.integrations import TensorBoardCallback

    from ptuning.tasks import TaskSpec
    from ptuning.training.config import TrainConfig
    from ptuning.training.trainer import WallClock, run_callbacks, training_arguments

    spec = TaskSpec("t", "classification", ("neg", "pos"), "accuracy")
    for name, report_to in (("tensorboard", []), ("none", []), ("wandb", ["wandb"]), ("mlflow", ["mlflow"])):
        cfg = TrainConfig(report_to=name)
        assert training_arguments(cfg, spec, tmp_path, steps_per_epoch=4).report_to == report_to, name
        boards = [
            c for c in run_callbacks(cfg, tmp_path, WallClock(None)) if isinstance(c, TensorBoardCallback)
        ]
        assert len(boards) == (name == "tensorboard"), name
        if boards:
            assert boards[0].logging_dir == str(tmp_path / "tensorboard")


def test_counts_take_the_right_number():
    from ptuning.training.config import TrainConfig
    from ptuning.training.run import _planned_length
    from ptuning.wording import plural

    assert plural(1, "epoch") == "1 epoch" and plural(1.0, "step") == "1 step"
    assert plural(0.4, "epoch") == "0.4 epochs" and plural(2, "step") == "2 steps"
    assert plural(2 / 3, "epoch") == "0.667 epochs" and plural(0, "example") == "0 examples"
    assert plural(3, "entry", "entries") == "3 entries"
    assert _planned_length(TrainConfig(max_steps=10), 10) == "max_steps 10 (1 epoch of 10 steps)"
    assert _planned_length(TrainConfig(epochs=1), 1) == "epochs 1 (1 step)"
