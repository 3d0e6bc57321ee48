"""Metric values checked against hand computations."""

from __future__ import annotations

import math

import pytest

from ptuning.data import KNOWN_TASKS, get_task_spec
from ptuning.metrics import answer_f1, compute_metrics, normalize_answer
from ptuning.tasks import TaskSpec

BINARY = TaskSpec("binary", "classification", ("neg", "pos"), "f1")


def test_binary_classification_by_hand() -> None:
    # refs 1 0 0 0, preds 1 1 0 0: TP 1, FP 1, TN 2, FN 0
    result = compute_metrics(BINARY, [1, 1, 0, 0], [1, 0, 0, 0])
    assert result["accuracy"] == 0.75
    assert result["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # precision 1/2, recall 1/1
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 2 / sqrt(2*1*3*2)
    assert result["matthews_correlation"] == pytest.approx(2 / math.sqrt(12))
    assert all(type(value) is float for value in result.values())


def test_cola_primary_metric_is_matthews() -> None:
    result = compute_metrics(get_task_spec("cola"), [0, 1, 1, 1], [0, 0, 1, 1])
    # TP 2, FP 1, TN 1, FN 0: (2*1 - 1*0) / sqrt(3*2*2*1)
    assert result["matthews_correlation"] == pytest.approx(2 / math.sqrt(12))


def test_cb_reports_accuracy_and_macro_f1() -> None:
    spec = get_task_spec("cb")  # entailment 0, contradiction 1, neutral 2
    refs = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    result = compute_metrics(spec, preds, refs)
    assert result["accuracy"] == pytest.approx(4 / 6)
    # per class F1: entailment P 1/2 R 1/2 -> 1/2; contradiction P 2/3 R 1 -> 4/5; neutral P 1 R 1/2 -> 2/3
    assert result["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert "f1" not in result


def test_multirc_f1a_and_em() -> None:
    spec = get_task_spec("multirc")  # False 0, True 1
    refs = [1, 0, 1, 0, 1]
    preds = [1, 0, 0, 0, 1]
    groups = ["0-0", "0-0", "0-1", "0-1", "1-0"]
    result = compute_metrics(spec, preds, refs, groups=groups)
    assert result["f1a"] == pytest.approx(2 * 1.0 * (2 / 3) / (1 + 2 / 3))  # TP 2, FP 0, FN 1
    assert result["em"] == pytest.approx(2 / 3)  # questions 0-0 and 1-0 all right, 0-1 not
    assert "em" not in compute_metrics(spec, preds, refs)


def test_regression_by_hand() -> None:
    result = compute_metrics(get_task_spec("stsb"), [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    # cov = (-1)(-4/3) + 0 + (1)(5/3) = 3; var_p = 2; var_r = 16/9 + 1/9 + 25/9 = 42/9
    assert result["pearson"] == pytest.approx(3 / math.sqrt(2 * 42 / 9))
    assert result["spearman"] == pytest.approx(1.0)
    assert result["mse"] == pytest.approx(1 / 3)
    constant = compute_metrics(get_task_spec("stsb"), [2.0, 2.0, 2.0], [1.0, 2.0, 4.0])
    assert constant["pearson"] == 0.0 and constant["spearman"] == 0.0


def test_multiple_choice_accuracy() -> None:
    assert compute_metrics(get_task_spec("copa"), [0, 1, 1, 0], [0, 1, 0, 0]) == {"accuracy": 0.75}


def test_entity_level_scores_by_hand() -> None:
    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    preds = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-MISC"]]
    result = compute_metrics(get_task_spec("conll03"), preds, refs)
    # gold entities: PER, LOC, ORG; predicted: PER, ORG, MISC; correct: PER, ORG
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(4 / 6)  # token accuracy
    # a partly found entity does not count
    partial = compute_metrics(get_task_spec("conll03"), [["B-PER", "O"]], [["B-PER", "I-PER"]])
    assert partial["f1"] == 0.0


def test_squad_normalisation_and_f1_by_hand() -> None:
    assert normalize_answer("  The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    # "Denver Broncos team" vs "Denver Broncos": 2 shared tokens, P 2/3, R 1, F1 0.8
    assert answer_f1("Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    assert answer_f1("Carolina", "Denver Broncos") == 0.0
    spec = get_task_spec("squad")
    result = compute_metrics(
        spec,
        {"a": "the Denver Broncos", "b": "Denver Broncos team", "c": "Santa Clara"},
        {"a": ["Denver Broncos"], "b": ["Broncos", "Denver Broncos"], "c": ["Levi's Stadium"], "d": ["x"]},
    )
    # a: EM 1, F1 1; b: best gold "Denver Broncos" -> EM 0, F1 0.8; c: 0, 0; d: no prediction -> 0, 0
    assert result["exact_match"] == pytest.approx(1 / 4)
    assert result["f1"] == pytest.approx((1 + 0.8) / 4)


@pytest.mark.parametrize("name", list(KNOWN_TASKS))
def test_primary_metric_is_always_reported(name: str) -> None:
    spec = get_task_spec(name)
    if spec.task_type == "question_answering":
        predictions, references = {"q": "x"}, {"q": ["x"]}
    elif spec.task_type == "token_classification":
        predictions = references = [["B-" + spec.labels[1][2:], "O"]]
    elif spec.task_type == "regression":
        predictions, references = [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]
    else:
        predictions, references = [0, 1, 1, 0], [0, 1, 1, 0]
    result = compute_metrics(spec, predictions, references)
    assert spec.metric in result
    assert result[spec.metric] == pytest.approx(1.0)


def test_mismatched_or_empty_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute_metrics(BINARY, [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics(BINARY, [], [])
    with pytest.raises(ValueError, match="sentence 0: 1 predicted tags but 2 reference tags"):
        compute_metrics(get_task_spec("conll04"), [["O"]], [["O", "O"]])
    with pytest.raises(ValueError, match="2 groups but 1 references"):
        compute_metrics(get_task_spec("multirc"), [1], [1], groups=["a", "b"])
