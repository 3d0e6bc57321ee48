"""Task metrics from predictions and references, with well-kept libraries where they exist.

`compute_metrics` returns plain floats keyed by metric name, always including the task's primary
metric under its own name (``spec.metric``), so ``result[spec.metric]`` picks the best checkpoint.

Scales: accuracy, precision, recall, F1, F1a, EM and the SQuAD scores are fractions in [0, 1]
(multiply by 100 for the usual leaderboard scale); Matthews, Pearson and Spearman correlations are
in [-1, 1].

- classification (label ids): ``accuracy`` and ``matthews_correlation`` (scikit-learn; 0.0 when
  only one class occurs); for two labels ``f1`` of the positive class ``labels[1]`` (MRPC
  "equivalent", MultiRC/BoolQ "True"), for more labels ``f1_macro`` (CB). MultiRC (metric ``f1a``): ``f1a``, binary F1 over all answers, and,
  given `groups` (one question id per answer), ``em``: the fraction of questions whose answers are
  all right.
- regression: ``pearson`` and ``spearman`` (scipy; 0.0 when a side is constant, where they are
  undefined), and ``mse``.
- multiple choice (choice indices): ``accuracy``.
- token classification (lists of IOB2 tag-name lists): entity-level ``precision``, ``recall``,
  ``f1`` (seqeval, default mode) and token ``accuracy``.
- question answering (``{id: predicted text}`` against ``{id: [gold texts]}``): ``exact_match`` and
  ``f1`` with the official SQuAD v1.1 answer normalisation, maximised over the gold answers; a
  reference id without a prediction scores 0.
"""

from __future__ import annotations

import math
import re
import string
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats
from seqeval import metrics as seqeval_metrics
from sklearn import metrics as sk_metrics

from ptuning.tasks import TaskSpec


def compute_metrics(
    spec: TaskSpec,
    predictions: Any,
    references: Any,
    *,
    groups: Sequence[str] | None = None,
) -> dict[str, float]:
    """Metrics of `predictions` against `references` for the task of `spec` (see the module docstring
    for the input formats, the keys and their scales)."""
    score = _SCORES.get(spec.task_type)
    if score is None:
        raise ValueError(f"unsupported task type {spec.task_type!r}")
    result = score(spec, predictions, references, groups)
    if spec.metric not in result:
        raise ValueError(
            f"metric {spec.metric!r} of task {spec.name!r} was not computed (got {', '.join(result)})"
        )
    return result


def _paired(predictions: Any, references: Any) -> tuple[list[Any], list[Any]]:
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not references:
        raise ValueError("no predictions to score")
    return predictions, references


def _classification(
    spec: TaskSpec, predictions: list[Any], references: list[Any], groups: Sequence[str] | None
) -> dict[str, float]:
    y_pred, y_true = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
    if groups is not None and len(groups) != len(y_true):
        raise ValueError(f"{len(groups)} groups but {len(y_true)} references")
    with warnings.catch_warnings():  # one class only (a tiny eval set): sklearn warns and returns 0.0
        warnings.simplefilter("ignore", UserWarning)
        matthews = float(sk_metrics.matthews_corrcoef(y_true, y_pred))
    result = {"accuracy": float(sk_metrics.accuracy_score(y_true, y_pred)), "matthews_correlation": matthews}
    if len(spec.labels) == 2:
        result["f1"] = float(
            sk_metrics.f1_score(y_true, y_pred, pos_label=1, average="binary", zero_division=0)
        )
    else:
        result["f1_macro"] = float(sk_metrics.f1_score(y_true, y_pred, average="macro", zero_division=0))
    if spec.metric == "f1a":
        result["f1a"] = result["f1"]
    if groups is not None:
        result["em"] = _group_exact_match(y_pred, y_true, groups)
    return result


def _group_exact_match(y_pred: np.ndarray, y_true: np.ndarray, groups: Sequence[str]) -> float:
    """Fraction of groups (MultiRC questions) whose every member is predicted right."""
    all_right: dict[str, bool] = {}
    for group, correct in zip(groups, (y_pred == y_true).tolist(), strict=True):
        all_right[group] = all_right.get(group, True) and correct
    return sum(all_right.values()) / len(all_right)


def _correlation(value: float) -> float:
    return 0.0 if math.isnan(value) else float(value)


def _regression(predictions: list[Any], references: list[Any]) -> dict[str, float]:
    y_pred, y_true = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    constant = len(y_true) < 2 or np.ptp(y_pred) == 0 or np.ptp(y_true) == 0
    return {
        "pearson": 0.0 if constant else _correlation(stats.pearsonr(y_pred, y_true).statistic),
        "spearman": 0.0 if constant else _correlation(stats.spearmanr(y_pred, y_true).statistic),
        "mse": float(np.mean((y_pred - y_true) ** 2)),
    }


def _choices(predictions: list[Any], references: list[Any]) -> dict[str, float]:
    return {"accuracy": float(sk_metrics.accuracy_score(references, predictions))}


def _entities(predictions: list[Sequence[str]], references: list[Sequence[str]]) -> dict[str, float]:
    y_pred = [list(p) for p in predictions]
    y_true = [list(r) for r in references]
    for index, (p, r) in enumerate(zip(y_pred, y_true, strict=True)):
        if len(p) != len(r):
            raise ValueError(f"sentence {index}: {len(p)} predicted tags but {len(r)} reference tags")
    return {
        "precision": float(seqeval_metrics.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(seqeval_metrics.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(seqeval_metrics.f1_score(y_true, y_pred, zero_division=0)),
        "accuracy": float(seqeval_metrics.accuracy_score(y_true, y_pred)),
    }


# The metric function of each task type: (spec, predictions, references, groups) -> scores
_SCORES = {
    "classification": lambda spec, p, r, groups: _classification(spec, *_paired(p, r), groups),
    "regression": lambda spec, p, r, groups: _regression(*_paired(p, r)),
    "multiple_choice": lambda spec, p, r, groups: _choices(*_paired(p, r)),
    "token_classification": lambda spec, p, r, groups: _entities(*_paired(p, r)),
    "question_answering": lambda spec, p, r, groups: squad_scores(p, r),
}


# --------------------------------------------------------------------------------------------------
# SQuAD v1.1 (the official evaluation script's normalisation and scores)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (official SQuAD)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of two answers after normalisation (0 when they share no token)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def answer_exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Mean ``exact_match`` and ``f1`` over the reference ids, each the best over that id's gold answers."""
    if not references:
        raise ValueError("no references to score")
    exact, f1 = 0.0, 0.0
    for qid, golds in references.items():
        golds = list(golds) or [""]
        prediction = predictions.get(qid)
        if prediction is None:
            continue
        exact += max(answer_exact_match(prediction, gold) for gold in golds)
        f1 += max(answer_f1(prediction, gold) for gold in golds)
    return {"exact_match": exact / len(references), "f1": f1 / len(references)}
