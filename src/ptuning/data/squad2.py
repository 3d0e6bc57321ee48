"""SQuAD 2.0 (``squad2``): extractive QA where a question may have no answer in its paragraph.

Files: ``squad/train-v2.0.json`` and ``squad/dev-v2.0.json`` under the data directory (the official
SQuAD 2.0 JSON: every question has ``is_impossible``; an impossible one has no ``answers``, its
``plausible_answers`` are ignored). Where a network exists: the hub's ``rajpurkar/squad_v2``.

Training points an unanswerable question at the CLS token (start = end = 0). At evaluation each
question gets its best span (as in SQuAD 1.1, over every window) and a null score, the lowest
CLS start + end logit over its windows; the answer is empty when null score - span score exceeds a
threshold. The threshold is tuned on the dev set as the official evaluation script does
(``find_best_thresh`` of evaluate-v2.0.py): the one that maximises F1 there. Reported, at that
threshold: ``exact_match``, ``f1`` (the primary metric), their ``has_ans_*`` and ``no_ans_*`` parts
and ``null_threshold``; ``f1_at_zero`` is F1 at threshold 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptuning.data.converters import _read_squad, _squad_hub
from ptuning.data.features import Feature
from ptuning.data.postprocess import postprocess_qa
from ptuning.data.readers import Example, _read_json, _Record
from ptuning.data.registry import BuiltinTask, HubSource
from ptuning.metrics import answer_exact_match, answer_f1, normalize_answer
from ptuning.tasks import TaskSpec


def read_squad2(path: Path, spec: TaskSpec) -> list[Example]:
    """Questions of a SQuAD 2.0 file, checked: ``is_impossible`` must agree with the answers."""
    examples = _read_squad(path, spec)  # checks every record and answer offset
    answered = {ex["id"]: bool(ex["answers"]["text"]) for ex in examples}
    for article in _read_json(path)["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                record = _Record(str(path), f"question id {qa['id']}", qa)
                impossible = record.get("is_impossible", bool)
                if impossible == answered[str(qa["id"])]:
                    state = "has answers" if impossible else "has no answers"
                    raise record.error(f"is_impossible is {str(impossible).lower()} but the question {state}")
    return examples


def null_scores(features: Sequence[Feature], start_logits: Any, end_logits: Any) -> dict[str, float]:
    """Per example id, the lowest CLS (token 0) start + end logit over its windows."""
    scores: dict[str, float] = {}
    for index, feature in enumerate(features):
        score = float(start_logits[index][0]) + float(end_logits[index][0])
        key = feature["example_id"]
        scores[key] = min(score, scores.get(key, score))
    return scores


def span_scores(
    features: Sequence[Feature],
    start_logits: Any,
    end_logits: Any,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, float]:
    """Per example id, the score (start + end logit) of its best valid span, the one `postprocess_qa`
    answers (-inf where there is none)."""
    scores: dict[str, float] = defaultdict(lambda: float("-inf"))
    for index, feature in enumerate(features):
        offsets = feature["offset_mapping"]
        starts = np.asarray(start_logits[index], dtype=np.float64)[: len(offsets)]
        ends = np.asarray(end_logits[index], dtype=np.float64)[: len(offsets)]
        key = feature["example_id"]
        for s in np.argsort(starts)[::-1][:n_best]:
            for e in np.argsort(ends)[::-1][:n_best]:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                scores[key] = max(scores[key], float(starts[s] + ends[e]))
    return scores


def best_threshold(
    span: Sequence[float], null: Sequence[float], diffs: Sequence[float]
) -> tuple[float, float]:
    """(threshold, mean score) maximising the mean score when a question answers null iff its diff
    (null score - span score) exceeds the threshold; `span` and `null` are each question's score with
    its span and with the empty answer (evaluate-v2.0.py's find_best_thresh, ties kept at the lowest)."""
    order = np.argsort(np.asarray(diffs, dtype=np.float64), kind="stable")
    current = best = float(sum(null))  # threshold below every diff: all null
    threshold = float(min(diffs)) - 1.0
    for i in order:
        current += span[i] - null[i]
        if current > best:
            best, threshold = current, float(diffs[i])
    return threshold, best / len(diffs)


def squad2_metrics(
    examples: Sequence[Example], features: Sequence[Feature], start_logits: Any, end_logits: Any
) -> dict[str, float]:
    """EM/F1 with the null threshold tuned on these examples (module docstring)."""
    answers = postprocess_qa(examples, features, start_logits, end_logits)
    nulls = null_scores(features, start_logits, end_logits)
    spans = span_scores(features, start_logits, end_logits)
    ids = [ex["id"] for ex in examples]
    golds = {ex["id"]: list(ex["answers"]["text"]) or [""] for ex in examples}
    has_answer = np.array([bool(ex["answers"]["text"]) for ex in examples])
    # null - span; a question without a valid span (or without a window) answers null
    diffs = [min(nulls[q] - spans[q], 1e9) if q in nulls else 1e9 for q in ids]

    def scores(metric) -> tuple[np.ndarray, np.ndarray]:
        span = np.array([max(metric(answers[q]["text"], g) for g in golds[q]) for q in ids])
        null = np.array([max(metric("", g) for g in golds[q]) for q in ids])
        return span, null

    f1_span, f1_null = scores(answer_f1_v2)
    em_span, em_null = scores(answer_exact_match)
    threshold, _ = best_threshold(f1_span, f1_null, diffs)
    is_null = np.asarray(diffs) > threshold
    f1 = np.where(is_null, f1_null, f1_span)
    em = np.where(is_null, em_null, em_span)
    at_zero = np.where(np.asarray(diffs) > 0, f1_null, f1_span)

    def part(values: np.ndarray, mask: np.ndarray) -> float:
        return float(values[mask].mean()) if mask.any() else 0.0

    return {
        "exact_match": float(em.mean()),
        "f1": float(f1.mean()),
        "has_ans_exact_match": part(em, has_answer),
        "has_ans_f1": part(f1, has_answer),
        "no_ans_exact_match": part(em, ~has_answer),
        "no_ans_f1": part(f1, ~has_answer),
        "has_ans_count": float(has_answer.sum()),
        "no_ans_count": float((~has_answer).sum()),
        "null_threshold": threshold,
        "f1_at_zero": float(at_zero.mean()),
    }


def answer_f1_v2(prediction: str, gold: str) -> float:
    """SQuAD 2.0's F1: 1 when both answers normalise to nothing, else the token-overlap F1."""
    if not normalize_answer(prediction) or not normalize_answer(gold):
        return answer_exact_match(prediction, gold)
    return answer_f1(prediction, gold)


TASK = BuiltinTask(
    TaskSpec("squad2", "question_answering", (), "f1", null_answers=True),
    "SQuAD 2.0",
    "squad",
    "train-v2.0.json",
    "dev-v2.0.json",
    read_squad2,
    hub=HubSource("rajpurkar/squad_v2", None, _squad_hub),
)
