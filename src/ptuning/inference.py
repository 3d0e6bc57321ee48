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

Input rules, the same for every task type: an object may hold only its type's fields; every text
(a string input, a text field, each choice, each token) must hold a non-space character and be
valid Unicode (no unpaired surrogate, which is what invalid UTF-8 on a command line decodes to).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data import encode, make_collator, postprocess_qa, spans_from_tags, word_predictions
from .data.features import predicate_marker
from .data.spec import DataError, TaskSpec
from .modeling import PromptModel

FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text", "text_pair"),
    "regression": ("text", "text_pair"),
    "multiple_choice": ("context", "choices"),
    "token_classification": ("tokens", "predicate"),  # predicate: SRL's word index (conll05)
    "question_answering": ("question", "context"),
}


def _check_text(text: str, what: str) -> None:
    """`what` ("input 0: field 'text'") names the text in the DataError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{what} is not valid Unicode text (unpaired surrogate U+{ord(text[exc.start]):04X} at "
            f"character {exc.start}; invalid UTF-8?)"
        ) from None
    if not text.strip():
        raise DataError(f"{what} is empty; expected text with at least one non-space character")


def _field(item: dict, key: str, kind: type, index: int, *, optional: bool = False):
    value = item.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
        expected = "a list of strings" if kind is list else "a string"
        raise DataError(f"input {index}: field {key!r} must be {expected}, got {type(value).__name__}")
    if kind is list:
        if not value:
            raise DataError(f"input {index}: field {key!r} is empty; expected at least one item")
        for position, text in enumerate(value):
            _check_text(text, f"input {index}: field {key!r} item {position}")
    else:
        _check_text(value, f"input {index}: field {key!r}")
    return value


def parse_input(spec: TaskSpec, item: Any, index: int) -> dict[str, Any]:
    """A raw input -> an example dict of `ptuning.data` (without a label)."""
    kind = spec.task_type
    if isinstance(item, str):
        _check_text(item, f"input {index}: the text")
        if kind in ("classification", "regression"):
            return {"text": item, "text_pair": None}
        if kind == "token_classification":
            return {"tokens": item.split()}
        raise DataError(f"input {index}: task {spec.name!r} ({kind}) needs an object, not a plain string")
    if not isinstance(item, dict):
        raise DataError(f"input {index}: expected a string or an object, got {type(item).__name__}")
    unknown = [key for key in item if key not in FIELDS[kind]]
    if unknown:
        raise DataError(
            f"input {index}: field {unknown[0]!r} is not a field of a {kind} input; "
            f"expected {', '.join(FIELDS[kind])}"
        )
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
        predicate = item.get("predicate")  # semantic role labelling: the predicate's word index
        if predicate is None:
            return {"tokens": tokens}
        if not isinstance(predicate, int) or isinstance(predicate, bool) or not 0 <= predicate < len(tokens):
            raise DataError(f"input {index}: field 'predicate' must be a word index below {len(tokens)}")
        return {"tokens": tokens, "predicate": predicate}
    return {
        "id": str(index),
        "question": _field(item, "question", str, index),
        "context": _field(item, "context", str, index),
    }


def _too_long(spec: TaskSpec, example: dict, tokenizer, max_length: int) -> bool:
    # Tokenized with truncation to one token past the limit: longer means truncated, and the
    # tokenizer never warns that a long input "will result in indexing errors" (it will not).
    cut = {"truncation": True, "max_length": max_length + 1}
    kind = spec.task_type
    if kind in ("classification", "regression"):
        texts = [example["text"]] + ([example["text_pair"]] if example.get("text_pair") else [])
        return len(tokenizer(*texts, **cut)["input_ids"]) > max_length
    if kind == "multiple_choice":
        return any(
            len(tokenizer(example["context"], c, **cut)["input_ids"]) > max_length for c in example["choices"]
        )
    if kind == "token_classification":
        words = list(example["tokens"]) + predicate_marker(tokenizer, example)
        return len(tokenizer(words, is_split_into_words=True, **cut)["input_ids"]) > max_length
    return False  # QA slides a window over long contexts


class Predictor:
    """One task's prompt model and tokenizer, answering raw inputs in batches."""

    def __init__(self, model: PromptModel, tokenizer, *, max_length: int = 256, batch_size: int = 32) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.spec = model.spec
        limit = getattr(tokenizer, "model_max_length", max_length) or max_length
        self.max_length = min(max_length, limit, 512, model.max_text_length)
        self.batch_size = batch_size
        self.collate = make_collator(self.spec, tokenizer)

    @classmethod
    def from_checkpoint(cls, path, *, max_length: int | None = None, **kwargs) -> Predictor:
        """`max_length` None: the length the checkpoint was trained with (256 if it did not record one)."""
        from .checkpoint import recorded_inputs
        from .handcrafted import is_handcrafted

        if is_handcrafted(path):  # a template + verbalizer: same `predict`, no prompt model
            from .handcrafted.run import HandcraftedPredictor

            return HandcraftedPredictor.from_checkpoint(path, max_length=max_length, **kwargs)
        model, tokenizer = PromptModel.from_pretrained(path)
        max_length = max_length or recorded_inputs(path)[1] or 256
        return cls(model, tokenizer, max_length=max_length, **kwargs)

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
        device = next(self.model.parameters()).device
        for start in range(0, len(features), self.batch_size):
            batch = self.collate(features[start : start + self.batch_size])
            out = self.model(**{k: v.to(device) for k, v in batch.items()})
            if self.spec.task_type == "question_answering":
                rows.extend(out.start_logits.float().cpu().numpy())
                ends.extend(out.end_logits.float().cpu().numpy())
            else:
                rows.extend(out.logits.float().cpu().numpy())
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
