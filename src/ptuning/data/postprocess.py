"""Predictions -> answers, words, entities: `postprocess_qa` (start/end logits -> answer strings),
`word_predictions` (token predictions -> one per word) and `spans_from_tags` (IOB2 tags -> entities)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

from ptuning.data.features import Feature


def postprocess_qa(
    examples: Sequence[dict[str, Any]],
    features: Sequence[Feature],
    start_logits: Sequence[Sequence[float]] | np.ndarray,
    end_logits: Sequence[Sequence[float]] | np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, dict[str, Any]]:
    """Best answer span per example: ``{id: {"text", "start", "end"}}`` (character offsets into the
    context, end exclusive; empty text at 0 when no valid span exists).

    `features` are those of ``encode(..., for_training=False)`` and the logits are aligned with them
    (rows may be longer than a feature, e.g. padded batches). For each feature the `n_best` highest
    start and end logits are combined; a span is valid when both ends are context tokens, end >= start
    and it has at most `max_answer_length` tokens; the highest start + end logit wins over all windows."""
    by_example: dict[str, list[int]] = defaultdict(list)
    for index, feature in enumerate(features):
        by_example[feature["example_id"]].append(index)
    predictions: dict[str, dict[str, Any]] = {}
    for example in examples:
        best: tuple[float, int, int] | None = None
        for index in by_example.get(example["id"], []):
            offsets = features[index]["offset_mapping"]
            starts = np.asarray(start_logits[index], dtype=np.float64)[: len(offsets)]
            ends = np.asarray(end_logits[index], dtype=np.float64)[: len(offsets)]
            for s in np.argsort(starts)[::-1][:n_best]:
                for e in np.argsort(ends)[::-1][:n_best]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(starts[s] + ends[e])
                    if best is None or score > best[0]:
                        best = (score, offsets[s][0], offsets[e][1])
        if best is None:
            predictions[example["id"]] = {"text": "", "start": 0, "end": 0}
        else:
            _, start, end = best
            predictions[example["id"]] = {"text": example["context"][start:end], "start": start, "end": end}
    return predictions


def word_predictions(
    features_word_ids: Sequence[Sequence[int | None]],
    token_pred_ids: Sequence[Sequence[int]] | np.ndarray,
    *,
    num_words: Sequence[int] | None = None,
    fill_id: int = 0,
) -> list[list[int]]:
    """Per example, the predicted tag id of each word: the prediction at the word's first sub-word.

    `features_word_ids` are the ``word_ids`` of `encode`'s features, `token_pred_ids` the per-token
    argmax (rows may be padded longer). A list covers the words up to the last one seen; pass
    `num_words` (words per example) to get full-length lists, with `fill_id` (default 0, which is "O"
    for the built-in and user tag sets) for words cut off by truncation."""
    results = []
    for index, word_ids in enumerate(features_word_ids):
        predicted = token_pred_ids[index]
        seen = [w for w in word_ids if w is not None]
        length = num_words[index] if num_words is not None else (max(seen) + 1 if seen else 0)
        words = [fill_id] * length
        previous = None
        for position, word in enumerate(word_ids):
            if word is not None and word != previous and word < length:
                words[word] = int(predicted[position])
            previous = word
        results.append(words)
    return results


def spans_from_tags(tokens: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """Entities of an IOB2-tagged sentence: ``{"type", "start", "end", "text"}`` with word indices (end
    exclusive) and the words joined by spaces. Uses seqeval's chunking, so a stray I- tag starts an
    entity as in seqeval's default-mode scoring."""
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    return [
        {"type": kind, "start": start, "end": end + 1, "text": " ".join(tokens[start : end + 1])}
        for kind, start, end in get_entities(list(tags))
    ]
