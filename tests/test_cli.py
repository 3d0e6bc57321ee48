"""End-to-end CLI: train a few steps on a slice of each task family, then eval and predict."""

from __future__ import annotations

import json

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
