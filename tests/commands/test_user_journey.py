"""The commands chained as a user chains them: train on own files -> eval on another file -> predict on
a third -> serve; a built-in NER checkpoint scored on a user CoNLL file; trainings that must not
overwrite each other. Tiny random BERT, a few steps: the checks are on what flows between commands."""

from __future__ import annotations

import csv
import json
import os
import random
import stat
from pathlib import Path

import pytest

from ptuning.cli import main

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "film",
    "plot",
    "actor",
    "scene",
    "song",
    "book",
    "long",
    "short",
    "good",
    "bad",
    "dull",
    "bright",
]
TINY = ("--max-steps", "2", "--batch-size", "8", "--prefix-len", "4", "--quiet")


def _pairs(n: int, seed: int, labels=("neg", "pos")) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {
            "uid": f"r{seed}-{i}",
            "sentence1": " ".join(rng.choices(WORDS, k=6)),
            "sentence2": " ".join(rng.choices(WORDS, k=4)),
            "gold": labels[i % len(labels)],
        }
        for i in range(n)
    ]


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def _train_own(tiny_bert_dir, train: Path, dev: Path, *extra: str) -> int:
    return main([
        "train", "--backbone", str(tiny_bert_dir), "--train-file", str(train), "--validation-file", str(dev),
        "--text-column", "sentence1", "--text-pair-column", "sentence2", "--label-column", "gold",
        "--max-seq-length", "40", *TINY, *extra,
    ])  # fmt: skip


def test_own_data_train_eval_predict_serve(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train = _write_csv(tmp_path / "reviews.csv", _pairs(40, 1))
    dev = _write_csv(tmp_path / "dev.csv", _pairs(8, 2))
    assert _train_own(tiny_bert_dir, train, dev) == 0
    printed = capsys.readouterr().out
    out = Path("outputs/reviews-p-tuning-v2")  # named after the training file, not the main job's sst2
    assert (out / "prompt.safetensors").is_file() and not Path("outputs/sst2-p-tuning-v2").exists()
    ptuning_config = json.loads((out / "ptuning_config.json").read_text())
    train_config = json.loads((out / "train_config.json").read_text())
    assert ptuning_config["task"]["name"] == train_config["task"] == "reviews"
    assert ptuning_config["max_seq_length"] == 40
    assert ptuning_config["inputs"] == {
        "file_format": "csv",
        "text_column": "sentence1",
        "text_pair_column": "sentence2",
        "label_column": "gold",
        "tag_column": -1,
    }
    # what ran: 40 examples / batch 8 = 5 steps an epoch, stopped after 2 steps
    assert "max_steps 2 (0.4 epochs of 5 steps)" in printed and "epochs 1" not in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_steps"] == 2 and metrics["epochs_done"] == pytest.approx(0.4)

    # eval with no data named: the validation file it was trained with, scored as in training
    assert main(["eval", "--checkpoint", str(out)]) == 0
    dev_eval = json.loads(capsys.readouterr().out)
    assert dev_eval["accuracy"] == pytest.approx(metrics["validation"]["accuracy"], abs=1e-6)
    assert (out / "eval_reviews_validation.json").is_file()

    # eval on another file (only one of the two labels in it): the trained columns and length are used
    test_rows = [row for row in _pairs(12, 3) if row["gold"] == "pos"]
    test = _write_csv(tmp_path / "test.csv", test_rows)
    assert main(["eval", "--checkpoint", str(out), "--validation-file", str(test)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["examples"] == len(test_rows)
    assert (out / "eval_reviews_file_test.json").is_file()  # not the dev-set eval's file name
    assert json.loads((out / "eval_reviews_validation.json").read_text()) == dev_eval

    # the same file with its label column renamed: --label-column overrides the recorded column
    renamed = [{("y" if k == "gold" else k): v for k, v in row.items()} for row in test_rows]
    renamed_file = _write_csv(tmp_path / "renamed.csv", renamed)
    renamed_eval = ["eval", "--checkpoint", str(out), "--validation-file", str(renamed_file)]
    _one_line_error(main(renamed_eval), capsys.readouterr().err, "gold")
    assert main([*renamed_eval, "--label-column", "y"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(evaluated["accuracy"])

    # predict on the same file: same columns, ids copied, and the same accuracy as eval
    predictions = tmp_path / "test.predictions.jsonl"
    assert main([
        "predict", "--checkpoint", str(out), "--input", str(test), "--id-column", "uid", "--output", str(predictions)
    ]) == 0  # fmt: skip
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [row["id"] for row in rows] == [row["uid"] for row in test_rows]
    correct = sum(row["label"] == gold["gold"] for row, gold in zip(rows, test_rows, strict=True))
    assert evaluated["accuracy"] == pytest.approx(correct / len(test_rows))

    # predict on a third file in JSONL with the trained keys and an "id" key (copied without a flag)
    third = _pairs(5, 4)
    jsonl = tmp_path / "third.jsonl"
    jsonl.write_text("".join(json.dumps({"id": r["uid"], **r}) + "\n" for r in third))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "--input", str(jsonl)]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["id"] for a in answers] == [r["uid"] for r in third]

    # the serving predictor reads the same checkpoint at its recorded length and answers the same
    from ptuning.serving import MultiTaskPredictor

    served = MultiTaskPredictor.from_checkpoints({"mine": str(out)})
    assert served.task("mine").predictor.max_length == 40
    told = MultiTaskPredictor.from_checkpoints({"mine": str(out)}, max_length=24)  # --max-seq-length wins
    assert told.task("mine").predictor.max_length == 24
    inputs = [{"text": r["sentence1"], "text_pair": r["sentence2"]} for r in third]
    for got, want in zip(served.predict("mine", inputs), answers, strict=True):
        assert got["label"] == want["label"]
        for label, p in want["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(p, abs=1e-4)

    # written files are readable as umask allows (not mkstemp's 0600)
    mode = stat.S_IMODE((out / "prompt.safetensors").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_two_trainings_with_different_data_do_not_overwrite(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write_csv(tmp_path / "a" / "train.csv", _pairs(16, 1))
    second = _write_csv(tmp_path / "b" / "train.csv", _pairs(16, 5, labels=("no", "yes")))
    dev_a = _write_csv(tmp_path / "a" / "dev.csv", _pairs(4, 2))
    dev_b = _write_csv(tmp_path / "b" / "dev.csv", _pairs(4, 6, labels=("no", "yes")))
    assert _train_own(tiny_bert_dir, first, dev_a) == 0
    out = tmp_path / "outputs" / "train-p-tuning-v2"
    before = (out / "prompt.safetensors").read_bytes()

    # the same name from other data: refused, naming both, and the first checkpoint is untouched
    capsys.readouterr()
    code = _train_own(tiny_bert_dir, second, dev_b)
    _one_line_error(
        code,
        capsys.readouterr().err,
        str(out.relative_to(tmp_path)),
        str(first.resolve()),
        str(second.resolve()),
        "--overwrite",
    )
    assert (out / "prompt.safetensors").read_bytes() == before
    assert json.loads((out / "ptuning_config.json").read_text())["task"]["labels"] == ["neg", "pos"]

    # the same training again replaces its own checkpoint without asking; --overwrite replaces the other's
    assert _train_own(tiny_bert_dir, first, dev_a) == 0
    stale = out / "checkpoints" / "checkpoint-999"  # the other run's training state goes with it
    stale.mkdir()
    assert _train_own(tiny_bert_dir, second, dev_b, "--overwrite") == 0
    assert not stale.exists()
    assert json.loads((out / "ptuning_config.json").read_text())["task"]["labels"] == ["no", "yes"]

    # a built-in task into that folder is refused too
    capsys.readouterr()
    code = main(
        ["train", "--task", "sst2", "--backbone", str(tiny_bert_dir), "--output-dir", str(out), *TINY]
    )
    _one_line_error(code, capsys.readouterr().err, "'sst2'", "'train'")


def _write_conll(path: Path, examples: list[dict]) -> Path:
    lines = []
    for example in examples:
        lines += [
            f"{token} NNP O {tag}" for token, tag in zip(example["tokens"], example["tags"], strict=True)
        ]
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_builtin_ner_checkpoint_scores_a_user_conll_file_with_tags_in_another_order(
    tmp_path, tiny_bert_dir, shared_data, capsys
):
    from ptuning.data import load_task, subsample
    from ptuning.data.load import EVAL_SUBSET_SEED

    out = tmp_path / "conll03"
    assert main([
        "train", "--task", "conll03", "--backbone", str(tiny_bert_dir), "--output-dir", str(out),
        "--max-train-samples", "16", "--max-eval-samples", "8", "--max-seq-length", "64", *TINY,
    ]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--max-eval-samples", "12"]) == 0
    builtin = json.loads(capsys.readouterr().out)

    # the same 12 sentences as a user file: its tag ids come in sorted order, not the task's
    examples = subsample(load_task("conll03", shared_data).validation, 12, EVAL_SUBSET_SEED)
    user = _write_conll(tmp_path / "mine.conll", examples)
    from ptuning.data import load_user_task

    user_labels = load_user_task("token_classification", user, user).spec.labels
    checkpoint_labels = json.loads((out / "ptuning_config.json").read_text())["task"]["labels"]
    assert (
        set(user_labels) <= set(checkpoint_labels)
        and list(user_labels) != checkpoint_labels[: len(user_labels)]
    )
    assert main(["eval", "--checkpoint", str(out), "--validation-file", str(user)]) == 0
    scored = json.loads(capsys.readouterr().out)
    for key in ("f1", "precision", "recall", "accuracy", "loss"):
        assert scored[key] == pytest.approx(builtin[key], abs=1e-6), key

    # predict reads the CoNLL file too (tag columns ignored), one answer per sentence
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "--input", str(user)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["tokens"] for row in rows] == [ex["tokens"] for ex in examples]

    # a tag the checkpoint does not know: refused, naming it and the tags the file lacks
    bad = _write_conll(tmp_path / "bad.conll", [{"tokens": ["Paris", "rocks"], "tags": ["B-CITY", "O"]}])
    capsys.readouterr()
    code = main(["eval", "--checkpoint", str(out), "--validation-file", str(bad)])
    _one_line_error(code, capsys.readouterr().err, "bad.conll", "B-CITY", "B-PER")


def test_best_checkpoint_epoch_is_reported_not_the_last(tmp_path, tiny_bert_dir, capsys):
    train = _write_csv(tmp_path / "t.csv", _pairs(32, 1))
    dev = _write_csv(tmp_path / "d.csv", _pairs(8, 2))
    out = tmp_path / "run"
    assert main([
        "train", "--backbone", str(tiny_bert_dir), "--train-file", str(train), "--validation-file", str(dev),
        "--text-column", "sentence1", "--label-column", "gold", "--output-dir", str(out), "--quiet",
        "--batch-size", "8", "--prefix-len", "4", "--max-steps", "4", "--save-steps", "1", "--lr", "0.3",
    ]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    states = sorted((out / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    history = json.loads(states[-1].read_text())["log_history"]
    evals = [entry for entry in history if "eval_accuracy" in entry]
    best = max(evals, key=lambda e: e["eval_accuracy"])  # Trainer keeps the first of equal bests
    assert metrics["best_step"] == best["step"]
    assert metrics["validation"]["epoch"] == pytest.approx(best["epoch"]) == pytest.approx(best["step"] / 4)
    assert metrics["epochs_done"] == pytest.approx(1.0)


def test_best_position_reads_the_kept_checkpoint_from_the_log_history():
    from types import SimpleNamespace

    from ptuning.training.run import _best_checkpoint_position

    history = [
        {"step": 5, "epoch": 1.0, "eval_accuracy": 0.9},
        {"step": 10, "epoch": 2.0, "eval_accuracy": 0.7},
        {"step": 15, "epoch": 3.0, "eval_accuracy": 0.8},
    ]
    state = SimpleNamespace(
        best_model_checkpoint="out/checkpoints/checkpoint-5", log_history=history, epoch=3.0
    )
    assert _best_checkpoint_position(state) == (5, 1.0)
    assert _best_checkpoint_position(SimpleNamespace(best_model_checkpoint=None, log_history=history)) == (
        None,
        None,
    )
