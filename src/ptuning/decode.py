"""Model outputs -> answers: what `ptuning predict` prints and `ptuning serve` answers, per task
type (see `ptuning.inference` for the output forms). Shared by the prompt models' `Predictor` and
the handcrafted prompts' predictor, so neither imports the other."""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import postprocess_qa, spans_from_tags, word_predictions
from .data.spec import TaskSpec


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def format_outputs(spec: TaskSpec, examples, features, logits, flags) -> list[dict[str, Any]]:
    """Model outputs (aligned with `features`) -> one answer dict per example."""
    kind = spec.task_type
    if kind == "question_answering":
        starts, ends = logits
        answers = postprocess_qa(examples, features, starts, ends)
        if spec.null_answers:  # SQuAD 2.0: nothing when the null score beats the span by the threshold
            from .data.squad2 import null_scores, span_scores

            nulls, spans = null_scores(features, starts, ends), span_scores(features, starts, ends)
            for ex in examples:
                if ex["id"] not in nulls or nulls[ex["id"]] - spans[ex["id"]] > spec.null_threshold:
                    answers[ex["id"]] = {"text": "", "start": 0, "end": 0}
        results = [
            {
                "answer": answers[ex["id"]]["text"],
                "start": answers[ex["id"]]["start"],
                "end": answers[ex["id"]]["end"],
            }
            for ex in examples
        ]
    elif kind == "token_classification":
        predicted = [row.argmax(-1) for row in logits]
        word_ids = [f["word_ids"] for f in features]
        per_word = word_predictions(word_ids, predicted, num_words=[len(ex["tokens"]) for ex in examples])
        results = []
        for ex, ids in zip(examples, per_word, strict=True):
            tags = [spec.labels[i] for i in ids]
            results.append(
                {"tokens": ex["tokens"], "tags": tags, "entities": spans_from_tags(ex["tokens"], tags)}
            )
    elif kind == "regression":
        results = [{"score": float(np.asarray(row).reshape(-1)[0])} for row in logits]
    elif kind == "multiple_choice":
        results = []
        for row in logits:
            probs = _softmax(np.asarray(row))
            results.append(
                {"label": int(probs.argmax()), "probabilities": [round(float(p), 6) for p in probs]}
            )
    else:
        results = []
        for row in logits:
            probs = _softmax(np.asarray(row))
            results.append(
                {
                    "label": spec.labels[int(probs.argmax())],
                    "probabilities": {
                        name: round(float(p), 6) for name, p in zip(spec.labels, probs, strict=True)
                    },
                }
            )
    for result, flag in zip(results, flags, strict=True):
        result["truncated"] = flag
    return results
