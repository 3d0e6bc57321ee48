"""WiC, SQuAD 2.0 and CoNLL-2005 SRL on small hand-made files in the official formats (tests/fixtures)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from ptuning.cli import main
from ptuning.data import encode, load_task
from ptuning.data.squad2 import answer_f1_v2, best_threshold, squad2_metrics
from ptuning.errors import DataError
from tests.helpers import FIXTURES

DATA = FIXTURES


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def _copy(tmp_path: Path, folder: str) -> Path:
    shutil.copytree(DATA / folder, tmp_path / folder)
    return tmp_path


# --- WiC ------------------------------------------------------------------------------------------


def test_wic_marks_the_word_in_both_sentences():
    data = load_task("wic", DATA)
    assert data.spec.labels == ("False", "True") and data.spec.metric == "accuracy"
    assert (len(data.train), len(data.validation)) == (6, 4)
    assert data.train[1] == {
        "text": "run: They [run] a small shop downtown.",
        "text_pair": "She [runs] the company alone.",
        "label": "True",
    }
    assert [ex["label"] for ex in data.validation] == ["False", "True", "False", "False"]


def test_wic_errors_name_file_and_line(tmp_path):
    root = _copy(tmp_path, "superglue")
    path = root / "superglue/WiC/val.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    row["end2"] = 999
    lines[2] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"val\.jsonl, line 3: start2/end2 \[\d+, 999\) is not a span of sentence2"
    ):
        load_task("wic", root)
    with pytest.raises(
        DataError, match=r"missing .*superglue/WiC/train\.jsonl; put WiC as .*superglue/WiC/train\.jsonl"
    ):
        load_task("wic", tmp_path / "empty")


# --- CoNLL-2005 SRL -------------------------------------------------------------------------------


def test_conll05_one_example_per_predicate_with_bio_tags():
    data = load_task("conll05", DATA)
    assert len(data.train) == 4 and len(data.validation) == 2  # predicates: 2 + 1 + 1, and 1 + 1
    first, second = data.train[:2]
    assert first["tokens"] == second["tokens"] and first["tokens"][:3] == ["The", "cat", "chased"]
    assert (first["predicate"], second["predicate"]) == (2, 6)
    assert first["tags"] == ["B-A0", "I-A0", "B-V", "B-A1", "I-A1", "O", "O", "O", "B-AM-TMP", "O"]
    assert second["tags"] == ["O", "O", "O", "O", "O", "B-R-A0", "B-V", "B-A1", "O", "O"]
    assert data.validation[0]["tags"] == ["B-A0", "B-V", "B-A2", "B-A1", "I-A1", "O"]
    assert {"O", "B-V", "B-C-A1", "I-R-AM-TMP"} <= set(data.spec.labels)


def test_conll05_marks_the_predicate_like_the_reference(tokenizer):
    data = load_task("conll05", DATA)
    example = data.validation[0]  # "John gave Mary a book ." with predicate "gave"
    feature = encode(data.spec, [example], tokenizer, 64)[0]
    words = tokenizer(example["tokens"], is_split_into_words=True)["input_ids"]
    gave = tokenizer("gave", add_special_tokens=False)["input_ids"]
    assert feature["input_ids"] == words + gave + [tokenizer.sep_token_id]  # [CLS] words [SEP] gave [SEP]
    marker = len(words) - 1
    assert all(w is None for w in feature["word_ids"][marker:])
    assert all(label == -100 for label in feature["labels"][marker:])
    labelled = [data.spec.labels[i] for i in feature["labels"] if i != -100]
    assert labelled == example["tags"]


@pytest.mark.parametrize(
    ("line", "replacement", "message"),
    [
        (5, "book NN - *", r"dev\.txt, line 6: argument A1 is never closed"),
        (1, "John NNP - (A9*)", r"dev\.txt, line 1: unknown argument type 'A9'"),
        (2, "gave VBD give (V*) *", r"dev\.txt, line 2: expected 4 columns like line 1"),
        (3, "Mary NNP - A2", r"dev\.txt, line 3: argument cell 'A2' is not"),
    ],
)
def test_conll05_errors_name_file_and_line(tmp_path, line, replacement, message):
    root = _copy(tmp_path, "conll05")
    path = root / "conll05/dev.txt"
    lines = path.read_text().splitlines()
    lines[line - 1] = replacement
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        load_task("conll05", root)


# --- SQuAD 2.0 ------------------------------------------------------------------------------------


def test_squad2_reads_unanswerable_questions(tokenizer):
    data = load_task("squad2", DATA)
    assert data.spec.null_answers and data.spec.task_type == "question_answering"
    impossible = [ex["id"] for ex in data.train if not ex["answers"]["text"]]
    assert impossible == ["t3", "t5"] and len(data.train) == 5 and len(data.validation) == 5
    features = encode(data.spec, data.train, tokenizer, 64)
    by_question = dict(zip([ex["id"] for ex in data.train], features, strict=True))  # one window each
    assert (by_question["t3"]["start_positions"], by_question["t3"]["end_positions"]) == (0, 0)
    assert by_question["t1"]["start_positions"] > 0


def test_squad2_is_impossible_must_agree(tmp_path):
    root = _copy(tmp_path, "squad")
    path = root / "squad/dev-v2.0.json"
    data = json.loads(path.read_text())
    data["data"][0]["paragraphs"][0]["qas"][1]["is_impossible"] = False
    path.write_text(json.dumps(data))
    with pytest.raises(
        DataError, match="question id d2: is_impossible is false but the question has no answers"
    ):
        load_task("squad2", root)


def test_best_threshold_by_hand():
    # all null scores 1 (the null of q1); switching q0 (diff -2) +1, q2 (diff 1) +0.5, q1 (diff 3) -1
    threshold, best = best_threshold([1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [-2.0, 3.0, 1.0])
    assert threshold == 1.0 and best == pytest.approx(2.5 / 3)
    assert answer_f1_v2("", "") == 1.0 and answer_f1_v2("the", "") == 1.0 and answer_f1_v2("Paris", "") == 0.0
    assert answer_f1_v2("in Paris", "Paris") == pytest.approx(2 / 3)


def test_squad2_metrics_tune_the_null_threshold(tokenizer):
    data = load_task("squad2", DATA)
    features = encode(data.spec, data.validation, tokenizer, 64, for_training=False)
    labelled = encode(data.spec, data.validation, tokenizer, 64)
    length = max(len(f["input_ids"]) for f in features)
    start, end = np.zeros((len(features), length)), np.zeros((len(features), length))
    for row, feature in enumerate(labelled):  # the gold span (CLS for no answer) scores 5 + 5
        start[row, feature["start_positions"]] = end[row, feature["end_positions"]] = 5.0
    # answerable: null 0 vs span 10; unanswerable: null 10 vs best span ~0 -> a perfect threshold exists
    perfect = squad2_metrics(data.validation, features, start, end)
    assert perfect["f1"] == perfect["exact_match"] == 1.0
    assert perfect["has_ans_f1"] == perfect["no_ans_f1"] == 1.0
    assert (perfect["has_ans_count"], perfect["no_ans_count"]) == (3, 2)
    # CLS always highest: at threshold 0 everything is null (F1 = 2/5); the tuned threshold recovers spans
    start[:, 0] = end[:, 0] = 20.0
    shifted = squad2_metrics(data.validation, features, start, end)
    assert shifted["f1_at_zero"] == pytest.approx(2 / 5)
    assert shifted["f1"] == 1.0 and shifted["null_threshold"] > 0


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "keys"),
    [
        ("wic", {"accuracy"}),
        ("conll05", {"f1", "precision", "recall"}),
        ("squad2", {"f1", "exact_match", "has_ans_f1", "no_ans_f1", "null_threshold"}),
    ],
)
def test_train_and_eval_from_the_cli(task, keys, tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / task
    args = [
        "train", "--task", task, "--data-dir", str(DATA), "--backbone", str(tiny_bert_dir),
        "--output-dir", str(out), "--max-steps", "2", "--batch-size", "4", "--max-seq-length", "64",
        "--prefix-len", "4", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert keys <= set(metrics["validation"])
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--data-dir", str(DATA)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated[metrics["metric"]] == pytest.approx(metrics["validation"][metrics["metric"]])
    missing = ["train", "--task", task, "--data-dir", str(tmp_path / "none"), "--output-dir", str(out)]
    assert main(missing) == 2
    assert f"{tmp_path / 'none'}/" in capsys.readouterr().err

    saved = json.loads((out / "ptuning_config.json").read_text())["task"]
    if task == "squad2":  # predict answers with the threshold tuned on dev
        assert saved["null_answers"] and saved["null_threshold"] == metrics["validation"]["null_threshold"]
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text(json.dumps(PREDICT_INPUTS[task]) + "\n")
    predictions = tmp_path / "predictions.jsonl"
    assert (
        main(["predict", "--checkpoint", str(out), "--input", str(inputs), "--output", str(predictions)]) == 0
    )
    row = json.loads(predictions.read_text())
    assert PREDICT_KEYS[task] <= set(row)
    if task == "conll05":
        assert len(row["tags"]) == 3
        inputs.write_text(json.dumps({"tokens": ["It", "rained"], "predicate": 2}) + "\n")
        assert main(["predict", "--checkpoint", str(out), "--input", str(inputs)]) == 2
        assert (
            "inputs.jsonl, line 1: field 'predicate' must be a word index below 2" in capsys.readouterr().err
        )


PREDICT_INPUTS = {
    "wic": {"text": "bank: the [bank] of the river", "text_pair": "a [bank] loan"},
    "conll05": {"tokens": ["Prices", "fell", "sharply"], "predicate": 1},
    "squad2": {"question": "Who wrote it?", "context": "The Moon orbits the Earth."},
}
PREDICT_KEYS = {"wic": {"label", "probabilities"}, "conll05": {"tags", "entities"}, "squad2": {"answer"}}


def test_squad2_prediction_answers_nothing_past_the_threshold():
    from ptuning.data import get_task_spec
    from ptuning.decode import format_outputs

    spec = get_task_spec("squad2")
    example = {"id": "0", "question": "q", "context": "Paris is big."}
    feature = {"example_id": "0", "offset_mapping": [None, None, (0, 5), (6, 8), (9, 12), None]}
    start = np.array([[2.0, 0, 3.0, 0, 0, 0]])
    end = np.array([[2.0, 0, 3.0, 0, 0, 0]])  # null 4 against "Paris" 6
    answer = format_outputs(spec, [example], [feature], (start, end), [False])[0]["answer"]
    assert answer == "Paris"
    start[0, 0] = end[0, 0] = 3.5  # null 7 > 6
    assert format_outputs(spec, [example], [feature], (start, end), [False])[0]["answer"] == ""
    lenient = replace(spec, null_threshold=1.5)  # 7 - 6 = 1 is not above 1.5
    assert format_outputs(lenient, [example], [feature], (start, end), [False])[0]["answer"] == "Paris"


def test_srl_truncation_flag_counts_the_predicate_marker(tokenizer):
    from ptuning.heads import head_class

    spec = load_task("conll05", DATA).spec
    too_long = head_class(spec.task_type).truncated  # what the Predictor's "truncated" flag reads
    words = ["cat"] * 10  # [CLS] + 10 + [SEP] = 12 tokens; the marker adds "cat" [SEP]
    assert not too_long({"tokens": words}, tokenizer, 12)
    assert too_long({"tokens": words, "predicate": 3}, tokenizer, 12)
    assert not too_long({"tokens": words, "predicate": 3}, tokenizer, 14)
