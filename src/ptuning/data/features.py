"""Examples -> model features with a Hugging Face fast tokenizer; batching.

`encode` turns the example dicts of `ptuning.data.registry` into per-feature dicts of python lists (no
padding) and `make_collator` pads a list of them into tensors; `ptuning.data.postprocess` maps model
outputs back to answer strings, words and entities.

Keys of a feature: the model inputs in `MODEL_INPUT_KEYS` (``token_type_ids`` only when the tokenizer
produces them; for text pairs encoded separately also the second text's, `PAIR_KEYS`) plus, for
mapping predictions back, ``word_ids`` (token classification) and
``example_id`` / ``offset_mapping`` (question answering with ``for_training=False``). The collator drops
every key not in `MODEL_INPUT_KEYS`.

Assumes the tokenizer pads on the right and puts the question first for question answering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import torch

from ptuning.core.config import PAIR_PREFIX, SEQUENCE_KEYS, PairEncoding, check_pair_encoding
from ptuning.errors import DataError
from ptuning.tasks import TaskSpec

Feature = dict[str, Any]


# a text pair encoded separately (`encode(..., pair_encoding="separate")`): the second text's inputs
PAIR_KEYS = tuple(PAIR_PREFIX + key for key in SEQUENCE_KEYS)
PAIR_ENCODINGS = get_args(PairEncoding)
MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    *PAIR_KEYS,
    "labels",
    "start_positions",
    "end_positions",
)
_CHUNK = 1000  # examples per tokenizer call: batched for speed, bounded for memory
IGNORE_INDEX = -100  # label of tokens that carry no tag (special tokens, non-first sub-words, padding)


def encode(
    spec: TaskSpec,
    examples: Sequence[dict[str, Any]],
    tokenizer: Any,
    max_length: int,
    *,
    for_training: bool = True,
    doc_stride: int | None = None,
    pair_encoding: str = "joint",
) -> list[Feature]:
    """Features of `examples` (see the module docstring), truncated to `max_length` tokens.

    `pair_encoding` (classification and regression; `PromptConfig.pair_encoding`): "joint" tokenizes
    a text pair as one sequence; "separate" tokenizes each text on its own, the second text's
    inputs under ``pair_input_ids``, ``pair_attention_mask`` (and ``pair_token_type_ids``), each
    truncated to `max_length`; every example must then have a ``text_pair``.

    Labels are added when the examples have them: ``labels`` (class id, float, choice index, or one
    id per token with -100 for special tokens and non-first sub-words), or ``start_positions`` /
    ``end_positions`` for question answering (0, the CLS token, when the answer is not inside the
    window). Question answering yields one feature per window of the context (overlap `doc_stride`,
    default ``min(128, max_length // 4)``); with ``for_training=False`` each feature also keeps
    ``example_id`` and ``offset_mapping`` (None for tokens outside the context).
    """
    if pair_encoding not in PAIR_ENCODINGS:
        raise ValueError(f"pair_encoding must be one of {', '.join(PAIR_ENCODINGS)}, got {pair_encoding!r}")
    check_pair_encoding(spec.task_type, pair_encoding)
    separate = pair_encoding == "separate"
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("a fast (Rust) tokenizer is required: offsets and word ids come from it")
    if max_length < 8:
        raise ValueError(f"max_length {max_length} is too small")
    if spec.task_type in ("classification", "regression"):
        return _encode_sequences(spec, examples, tokenizer, max_length, separate=separate)
    if spec.task_type == "multiple_choice":
        return _encode_choices(spec, examples, tokenizer, max_length)
    if spec.task_type == "token_classification":
        return _encode_tokens(spec, examples, tokenizer, max_length)
    if spec.task_type == "question_answering":
        stride = min(128, max_length // 4) if doc_stride is None else doc_stride
        return _encode_qa(
            examples,
            tokenizer,
            max_length,
            stride,
            keep_mapping=not for_training,
            null_answers=spec.null_answers,
        )
    raise ValueError(f"unsupported task type {spec.task_type!r}")


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _model_inputs(encoding: Any, index: int) -> Feature:
    return {key: encoding[key][index] for key in SEQUENCE_KEYS if key in encoding}


def _label_ids(spec: TaskSpec) -> dict[str, int]:
    return {name: i for i, name in enumerate(spec.labels)}


def _class_id(ids: dict[str, int], label: Any, what: str) -> int:
    if label not in ids:
        raise DataError(f"{what}: label {label!r} is not one of {', '.join(ids)}")
    return ids[label]


def _tokenize_pairs(
    tokenizer: Any, texts: list[str], pairs: list[str | None], max_length: int
) -> list[Feature]:
    """Tokenize texts (with their pairs where given); one batched call unless pairs are mixed with None."""
    if all(p is None for p in pairs):
        encoding = tokenizer(texts, truncation=True, max_length=max_length)
    elif all(p is not None for p in pairs):
        encoding = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    else:
        return [
            _model_inputs(
                tokenizer([t], [p] if p is not None else None, truncation=True, max_length=max_length), 0
            )
            for t, p in zip(texts, pairs, strict=True)
        ]
    return [_model_inputs(encoding, i) for i in range(len(texts))]


def _tokenize_apart(tokenizer: Any, texts: list[str], pairs: list[str], max_length: int) -> list[Feature]:
    """Each text and its pair tokenized on its own: the pair's inputs under `PAIR_KEYS`."""
    first = tokenizer(texts, truncation=True, max_length=max_length)
    second = tokenizer(pairs, truncation=True, max_length=max_length)
    features = []
    for i in range(len(texts)):
        feature = _model_inputs(first, i)
        feature.update({PAIR_PREFIX + k: v for k, v in _model_inputs(second, i).items()})
        features.append(feature)
    return features


def _encode_sequences(
    spec: TaskSpec,
    examples: Sequence[dict[str, Any]],
    tokenizer: Any,
    max_length: int,
    *,
    separate: bool = False,
) -> list[Feature]:
    ids = _label_ids(spec)
    features: list[Feature] = []
    for chunk in _chunks(examples):
        texts, pairs = [ex["text"] for ex in chunk], [ex.get("text_pair") for ex in chunk]
        if separate:
            for i, pair in enumerate(pairs):
                if pair is None:
                    raise DataError(
                        f"example {len(features) + i} has no text_pair: pair_encoding 'separate' "
                        "encodes the two texts of a pair apart, so every example needs both"
                    )
            encoded = _tokenize_apart(tokenizer, texts, pairs, max_length)
        else:
            encoded = _tokenize_pairs(tokenizer, texts, pairs, max_length)
        for example, feature in zip(chunk, encoded, strict=True):
            label = example.get("label")
            if label is not None:
                what = f"example {len(features)}"
                feature["labels"] = (
                    float(label) if spec.task_type == "regression" else _class_id(ids, label, what)
                )
            features.append(feature)
    return features


def _encode_choices(
    spec: TaskSpec, examples: Sequence[dict[str, Any]], tokenizer: Any, max_length: int
) -> list[Feature]:
    """Each choice is paired with the context; the inputs of a feature are lists of `num_choices` lists."""
    features: list[Feature] = []
    for index, example in enumerate(examples):
        choices = list(example["choices"])
        if spec.num_choices and len(choices) != spec.num_choices:
            raise DataError(f"example {index}: expected {spec.num_choices} choices, found {len(choices)}")
        encoding = tokenizer(
            [example["context"]] * len(choices), choices, truncation=True, max_length=max_length
        )
        feature: Feature = {key: list(encoding[key]) for key in SEQUENCE_KEYS if key in encoding}
        label = example.get("label")
        if label is not None:
            if not 0 <= int(label) < len(choices):
                raise DataError(
                    f"example {index}: label {label!r} is not a choice index below {len(choices)}"
                )
            feature["labels"] = int(label)
        features.append(feature)
    return features


def _encode_tokens(
    spec: TaskSpec, examples: Sequence[dict[str, Any]], tokenizer: Any, max_length: int
) -> list[Feature]:
    """Words are tokenized as pre-split words; the first sub-word of each word carries its tag id and
    every other token -100. Words cut off by truncation get no label (see `word_predictions`).

    An example with a ``predicate`` (a word index: semantic role labelling) has that word marked as
    the reference implementation does: the words, the separator token and the predicate word again
    (``[CLS] words [SEP] predicate [SEP]``); the marker's tokens carry no word id and no label."""
    ids = _label_ids(spec)
    features: list[Feature] = []
    for chunk in _chunks(examples):
        encoding = tokenizer(
            [list(ex["tokens"]) + predicate_marker(tokenizer, ex) for ex in chunk],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
        )
        for i, example in enumerate(chunk):
            feature = _model_inputs(encoding, i)
            n_words = len(example["tokens"])
            word_ids = [w if w is not None and w < n_words else None for w in encoding.word_ids(i)]
            feature["word_ids"] = word_ids
            tags = example.get("tags")
            if tags is not None:
                what = f"example {len(features)}"
                labels, previous = [], None
                for word in word_ids:
                    first = word is not None and word != previous
                    labels.append(_class_id(ids, tags[word], what) if first else IGNORE_INDEX)
                    previous = word
                feature["labels"] = labels
            features.append(feature)
    return features


def predicate_marker(tokenizer: Any, example: dict[str, Any]) -> list[str]:
    """``[separator, predicate word]`` for an example with a ``predicate`` index, else nothing."""
    predicate = example.get("predicate")
    if predicate is None:
        return []
    tokens = example["tokens"]
    if not isinstance(predicate, int) or not 0 <= predicate < len(tokens):
        raise DataError(f"predicate {predicate!r} is not a word index below {len(tokens)}")
    return [tokenizer.sep_token, tokens[predicate]]


def _clip_questions(tokenizer: Any, questions: list[str], max_tokens: int) -> list[str]:
    """Questions cut to at most `max_tokens` tokens, so that every window keeps room for the context."""
    encoding = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    clipped = []
    for question, offsets in zip(questions, encoding["offset_mapping"], strict=True):
        clipped.append(question if len(offsets) <= max_tokens else question[: offsets[max_tokens - 1][1]])
    return clipped


def _answer_span(
    sequence_ids: list[int | None], offsets: list[tuple[int, int]], start: int, end: int
) -> tuple[int, int]:
    """Token indices of the answer's first and last token in this window, (0, 0) if not fully inside."""
    context = [k for k, s in enumerate(sequence_ids) if s == 1]
    first, last = context[0], context[-1]
    if offsets[first][0] > start or offsets[last][1] < end:
        return 0, 0
    token_start = first
    while token_start <= last and offsets[token_start][0] <= start:
        token_start += 1
    token_end = last
    while token_end >= first and offsets[token_end][1] >= end:
        token_end -= 1
    return token_start - 1, token_end + 1


def _encode_qa(
    examples: Sequence[dict[str, Any]],
    tokenizer: Any,
    max_length: int,
    stride: int,
    *,
    keep_mapping: bool,
    null_answers: bool = False,
) -> list[Feature]:
    """Question + context windows: only the context is truncated, windows overlap by `stride` tokens."""
    if max_length < 32:
        raise ValueError(f"max_length {max_length} is too small for question answering (at least 32)")
    # Questions keep at most half the window; the tokenizer panics (not raises) if the overlap does
    # not fit in what is left for the context, so check here.
    room = max_length - max_length // 2 - tokenizer.num_special_tokens_to_add(pair=True)
    if not 0 <= stride < room:
        raise ValueError(
            f"doc_stride {stride} must be below {room}, the context tokens a window keeps at max_length {max_length}"
        )
    features: list[Feature] = []
    for chunk in _chunks(examples):
        questions = _clip_questions(tokenizer, [ex["question"].lstrip() for ex in chunk], max_length // 2)
        encoding = tokenizer(
            questions,
            [ex["context"] for ex in chunk],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        for i, example_index in enumerate(encoding["overflow_to_sample_mapping"]):
            example = chunk[example_index]
            feature = _model_inputs(encoding, i)
            sequence_ids = encoding.sequence_ids(i)
            offsets = encoding["offset_mapping"][i]
            answers = example.get("answers")
            if answers and answers["text"]:
                start = answers["answer_start"][0]
                span = _answer_span(sequence_ids, offsets, start, start + len(answers["text"][0]))
                feature["start_positions"], feature["end_positions"] = span
            elif answers is not None and null_answers:  # an unanswerable question (SQuAD 2.0): the CLS token
                feature["start_positions"], feature["end_positions"] = 0, 0
            if keep_mapping:
                feature["example_id"] = example["id"]
                feature["offset_mapping"] = [
                    tuple(offset) if sequence_ids[k] == 1 else None for k, offset in enumerate(offsets)
                ]
            features.append(feature)
    return features


# --------------------------------------------------------------------------------------------------
# Batching


def _pad(values: list[int], length: int, value: int, left: bool) -> list[int]:
    padding = [value] * (length - len(values))
    return padding + list(values) if left else list(values) + padding


@dataclass(frozen=True)
class Collator:
    """Pads features to the longest sequence of the batch and stacks the model inputs into tensors.

    A class rather than a closure so that it can be pickled into DataLoader worker processes."""

    task_type: str
    pad_token_id: int
    pad_token_type_id: int = 0
    left: bool = False

    def __call__(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        keys = [key for key in MODEL_INPUT_KEYS if key in features[0]]
        for index, feature in enumerate(features):
            missing = [key for key in keys if key not in feature]
            if missing:
                raise ValueError(f"feature {index} of the batch lacks {', '.join(missing)}")
        choices = self.task_type == "multiple_choice"
        rows = (
            [seq for f in features for seq in f["input_ids"]]
            if choices
            else [f["input_ids"] for f in features]
        )
        longest = max(len(row) for row in rows)
        pad_values = {
            "input_ids": self.pad_token_id,
            "attention_mask": 0,
            "token_type_ids": self.pad_token_type_id,
        }
        pad_values.update({PAIR_PREFIX + k: v for k, v in pad_values.items()})
        # a pair's second texts are padded to their own longest (the model pads both to one length)
        pair_longest = max(len(f[PAIR_KEYS[0]]) for f in features) if PAIR_KEYS[0] in keys else 0
        if self.task_type == "token_classification":
            pad_values["labels"] = IGNORE_INDEX
        batch: dict[str, torch.Tensor] = {}
        for key in keys:
            values = [feature[key] for feature in features]
            length = pair_longest if key.startswith(PAIR_PREFIX) else longest
            if key in pad_values and choices:
                padded = [
                    [_pad(seq, length, pad_values[key], self.left) for seq in value] for value in values
                ]
                batch[key] = torch.tensor(padded, dtype=torch.long)
            elif key in pad_values:
                batch[key] = torch.tensor(
                    [_pad(v, length, pad_values[key], self.left) for v in values], dtype=torch.long
                )
            elif key == "labels" and self.task_type == "regression":
                batch[key] = torch.tensor(values, dtype=torch.float32)
            else:
                batch[key] = torch.tensor(values, dtype=torch.long)
        return batch


def make_collator(spec: TaskSpec, tokenizer: Any) -> Callable[[list[Feature]], dict[str, torch.Tensor]]:
    """A collate function for `torch.utils.data.DataLoader` over features of `encode`.

    Pads dynamically (pad token, attention 0, token type = the tokenizer's pad type, token labels
    -100) to the longest sequence in the batch, on the tokenizer's padding side; multiple choice
    becomes (batch, num_choices, seq); the second texts of separately encoded pairs (`PAIR_KEYS`)
    are padded to their own longest. Keys outside `MODEL_INPUT_KEYS` are dropped."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # masked out anyway
    return Collator(
        task_type=spec.task_type,
        pad_token_id=int(pad_id),
        pad_token_type_id=int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        left=getattr(tokenizer, "padding_side", "right") == "left",
    )
