"""Bad input gives one line naming the file, the line or record and what was expected; exit code 2."""

from __future__ import annotations

import json

from ptuning.cli import main


def _run(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


def _train_files(tmp_path, tiny_bert_dir, train, validation, *extra):
    return (
        "train", "--backbone", str(tiny_bert_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
        "--train-file", str(train), "--validation-file", str(validation), "--max-steps", "1", *extra,
    )  # fmt: skip


def _assert_one_line(code, err, *needles):
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def test_unknown_task_lists_known_ones(capsys, tiny_bert_dir):
    code, err = _run(capsys, "train", "--task", "nope", "--backbone", str(tiny_bert_dir), "--quiet")
    _assert_one_line(code, err, "nope", "sst2", "conll03", "squad")


def test_unknown_backbone_lists_known_ones(capsys, tmp_path):
    code, err = _run(capsys, "info", "--backbone", str(tmp_path / "no-such-model"))
    _assert_one_line(code, err, "no-such-model", "minilm", "mpnet-base")


def test_missing_file(capsys, tmp_path, tiny_bert_dir):
    good = tmp_path / "dev.csv"
    good.write_text("text,label\nfine,pos\n")
    code, err = _run(capsys, *_train_files(tmp_path, tiny_bert_dir, tmp_path / "missing.csv", good))
    _assert_one_line(code, err, "missing.csv")


def test_empty_file(capsys, tmp_path, tiny_bert_dir):
    empty = tmp_path / "train.csv"
    empty.write_text("")
    code, err = _run(capsys, *_train_files(tmp_path, tiny_bert_dir, empty, empty))
    _assert_one_line(code, err, "train.csv", "empty")


def test_missing_column_names_columns_found(capsys, tmp_path, tiny_bert_dir):
    train = tmp_path / "train.csv"
    train.write_text("review,label\ngood,pos\nbad,neg\n")
    code, err = _run(capsys, *_train_files(tmp_path, tiny_bert_dir, train, train))
    _assert_one_line(code, err, "train.csv", "text", "review")


def test_label_not_seen_in_training(capsys, tmp_path, tiny_bert_dir):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"text": "meh", "label": "neutral"}\n')
    code, err = _run(capsys, *_train_files(tmp_path, tiny_bert_dir, train, dev))
    _assert_one_line(code, err, "dev.jsonl", "neutral")


def test_malformed_conll_line(capsys, tmp_path, tiny_bert_dir):
    train = tmp_path / "train.conll"
    train.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP\nBlackburn NNP B-NP I-PER\n")
    code, err = _run(
        capsys, *_train_files(tmp_path, tiny_bert_dir, train, train, "--task-type", "token_classification")
    )
    _assert_one_line(code, err, "train.conll", "4")


def test_malformed_squad_record(capsys, tmp_path, tiny_bert_dir):
    record = {"data": [{"title": "t", "paragraphs": [{"context": "John lives in Berlin.", "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 14}]}]}]}]}  # fmt: skip
    path = tmp_path / "train.json"
    path.write_text(json.dumps(record))
    code, err = _run(
        capsys, *_train_files(tmp_path, tiny_bert_dir, path, path, "--task-type", "question_answering")
    )
    _assert_one_line(code, err, "train.json", "q1")


def test_predict_input_with_wrong_field(capsys, tmp_path, tiny_bert_dir, shared_data):
    out = tmp_path / "ckpt"
    assert main([
        "train", "--task", "sst2", "--backbone", str(tiny_bert_dir), "--output-dir", str(out), "--quiet",
        "--max-train-samples", "8", "--max-eval-samples", "4", "--max-steps", "1", "--batch-size", "4",
    ]) == 0  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "oops"}\n')
    code, err = _run(capsys, "predict", "--checkpoint", str(out), "--input", str(bad))
    _assert_one_line(code, err, "bad.jsonl, line 2", "'text'", "txt")  # file, 1-based line, keys found
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n')
    code, err = _run(capsys, "predict", "--checkpoint", str(out), "--input", str(broken))
    _assert_one_line(code, err, "broken.jsonl, line 2", "JSON")


def test_eval_of_a_folder_that_is_not_a_checkpoint(capsys, tmp_path):
    code, err = _run(capsys, "eval", "--checkpoint", str(tmp_path))
    _assert_one_line(code, err, str(tmp_path), "ptuning_config.json")
