"""Predictions for raw inputs: what `ptuning predict` prints and `ptuning serve` answers.

Inputs, by task type (a plain string is accepted where one text suffices):
  classification / regression  {"text": str, "text_pair": str (optional)}
  multiple_choice              {"context": str, "choices": [str, ...]}
  token_classification         {"tokens": [str, ...]} or a string (split on whitespace)
  question_answering           {"question": str, "context": str}
Outputs:
  classification   {"label": name, "probabilities": {name: p}}
  regression       {"score": float}
  multiple_choice  {"label": index, "probabilities": [p, ...]}
  token_classif.   {"tokens": [...], "tags": [...], "entities": [{"type", "start", "end", "text"}]}
  question_answ.   {"answer": str, "start": char offset, "end": char offset (exclusive)}
Every output also says `"truncated": true` when the input was longer than the model's limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data import encode, make_collator, postprocess_qa, spans_from_tags, word_predictions
from .data.spec import DataError, TaskSpec
from .modeling import PromptModel
from .precision import resolve_precision


def _field(item: dict, key: str, kind: type, index: int, *, optional: bool = False):
    value = item.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
        expected = "a list of strings" if kind is list else "a string"
        raise DataError(f"input {index}: field {key!r} must be {expected}, got {type(value).__name__}")
    return value


def parse_input(spec: TaskSpec, item: Any, index: int) -> dict[str, Any]:
    """A raw input -> an example dict of `ptuning.data` (without a label)."""
    kind = spec.task_type
    if isinstance(item, str):
        if kind in ("classification", "regression"):
            return {"text": item, "text_pair": None}
        if kind == "token_classification":
            return {"tokens": item.split()}
        raise DataError(f"input {index}: task {spec.name!r} ({kind}) needs an object, not a plain string")
    if not isinstance(item, dict):
        raise DataError(f"input {index}: expected a string or an object, got {type(item).__name__}")
    if kind in ("classification", "regression"):
        return {
            "text": _field(item, "text", str, index),
            "text_pair": _field(item, "text_pair", str, index, optional=True),
        }
    if kind == "multiple_choice":
        choices = _field(item, "choices", list, index)
        if spec.num_choices and len(choices) != spec.num_choices:
            raise DataError(
                f"input {index}: task {spec.name!r} expects {spec.num_choices} choices, got {len(choices)}"
            )
        return {"context": _field(item, "context", str, index), "choices": choices}
    if kind == "token_classification":
        tokens = _field(item, "tokens", list, index)
        if not tokens:
            raise DataError(f"input {index}: field 'tokens' is empty")
        return {"tokens": tokens}
    return {
        "id": str(index),
        "question": _field(item, "question", str, index),
        "context": _field(item, "context", str, index),
    }


def _too_long(spec: TaskSpec, example: dict, tokenizer, max_length: int) -> bool:
    kind = spec.task_type
    if kind in ("classification", "regression"):
        texts = [example["text"]] + ([example["text_pair"]] if example.get("text_pair") else [])
        return len(tokenizer(*texts, truncation=False)["input_ids"]) > max_length
    if kind == "multiple_choice":
        return any(
            len(tokenizer(example["context"], c)["input_ids"]) > max_length for c in example["choices"]
        )
    if kind == "token_classification":
        return len(tokenizer(example["tokens"], is_split_into_words=True)["input_ids"]) > max_length
    return False  # QA slides a window over long contexts


class Predictor:
    """One task's prompt model and tokenizer, answering raw inputs in batches."""

    def __init__(
        self,
        model: PromptModel,
        tokenizer,
        *,
        max_length: int = 256,
        batch_size: int = 32,
        bf16: bool | None = None,
    ) -> None:
        self.model = model.eval()
        self.precision = resolve_precision(bf16, next(model.parameters()).device.type, answers=True)
        self.tokenizer = tokenizer
        self.spec = model.spec
        limit = getattr(tokenizer, "model_max_length", max_length) or max_length
        self.max_length = min(max_length, limit, 512)
        self.batch_size = batch_size
        self.collate = make_collator(self.spec, tokenizer)

    @classmethod
    def from_checkpoint(cls, path, **kwargs) -> Predictor:
        model, tokenizer = PromptModel.from_pretrained(path)
        return cls(model, tokenizer, **kwargs)

    def prepare(self, inputs: Sequence[Any]) -> tuple[list[dict], list[dict], list[bool]]:
        """Examples, features and truncation flags (raises DataError naming the bad input)."""
        examples = [parse_input(self.spec, item, i) for i, item in enumerate(inputs)]
        flags = [_too_long(self.spec, ex, self.tokenizer, self.max_length) for ex in examples]
        features = encode(self.spec, examples, self.tokenizer, self.max_length, for_training=False)
        return examples, features, flags

    @torch.no_grad()
    def logits(self, features: list[dict]) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
        """Raw model outputs per feature (QA: start and end logits)."""
        rows: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        for start in range(0, len(features), self.batch_size):
            batch = self.collate(features[start : start + self.batch_size])
            with self.precision.autocast():
                out = self.model(**batch)
            if self.spec.task_type == "question_answering":
                rows.extend(out.start_logits.float().numpy())
                ends.extend(out.end_logits.float().numpy())
            else:
                rows.extend(out.logits.float().numpy())
        return (rows, ends) if self.spec.task_type == "question_answering" else rows

    def predict(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        examples, features, flags = self.prepare(inputs)
        return format_outputs(self.spec, examples, features, self.logits(features), flags)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def format_outputs(spec: TaskSpec, examples, features, logits, flags) -> list[dict[str, Any]]:
    """Model outputs (aligned with `features`) -> one answer dict per example."""
    kind = spec.task_type
    if kind == "question_answering":
        starts, ends = logits
        answers = postprocess_qa(examples, features, starts, ends)
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
