"""One head per task type: its linear layer on the encoder's last hidden states (no verbalizer),
and everything else that differs by task type on the model side, in one place per type.

Each head class says, for its task type:
  forward / scores   logits and loss (`scores`: the raw per-row logits that `forward` and the
                     serving engine share)
  label_names        the batch keys that hold the labels (what `transformers.Trainer` passes on)
  reduce             logits -> what evaluation keeps (argmax, or the logits where the metric needs them)
  per_feature, join  model outputs -> one value per feature -> the logits form `decode` reads
  rows_of, merge_rows, per_row   the model rows of a feature, for the serving engine's mixed batches
  truncated          whether a raw input is longer than the model reads
  decode             logits -> answers (labels, scores, tags and entity spans, answer spans)
  evaluate           predictions -> the task's metrics (`ptuning.metrics.compute_metrics`)
`HEADS` maps a task type to its head class; `head_class(task_type)` looks one up (a spec-only
caller such as the handcrafted predictor uses the class without building a layer). `PAIR_HEADS`
holds the heads of text pairs encoded separately (`_SeparatePairs`: two model rows per feature).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import (
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput

from .core.config import SEQUENCE_KEYS, check_pair_encoding, pair_rows
from .data import postprocess_qa, spans_from_tags, squad2, word_predictions
from .data.features import predicate_marker
from .metrics import compute_metrics
from .tasks import TaskSpec


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """(B, T, H) -> (B, H): the first token, or the mean over unmasked tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _cut(max_length: int) -> dict:
    # Tokenized with truncation to one token past the limit: longer means truncated, and the
    # tokenizer never warns that a long input "will result in indexing errors" (it will not).
    return {"truncation": True, "max_length": max_length + 1}


class Head(nn.Module):
    """What every head shares; a subclass sets `task_type` and overrides what differs."""

    task_type: ClassVar[str] = ""
    label_names: ClassVar[tuple[str, ...]] = ("labels",)
    argmax_for_metrics: ClassVar[bool] = True  # evaluation keeps argmax ids, not logits

    def scores(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    # --- model inputs ---------------------------------------------------------------------------

    @staticmethod
    def flatten(tensor: torch.Tensor | None) -> torch.Tensor | None:
        """A batch's input tensor -> one row per model sequence (multiple choice: one per choice)."""
        return tensor

    @staticmethod
    def rows_of(feature: dict) -> list[dict]:
        """A feature's model rows: the sequences that `scores` reads one row each."""
        return [{k: feature[k] for k in SEQUENCE_KEYS if k in feature}]

    @classmethod
    def num_rows(cls, feature: dict) -> int:
        return 1

    @classmethod
    def truncated(cls, example: dict, tokenizer, max_length: int) -> bool:
        """Whether `tokenizer` cuts `example` (a parsed input) at `max_length` tokens."""
        texts = [example["text"]] + ([example["text_pair"]] if example.get("text_pair") else [])
        return len(tokenizer(*texts, **_cut(max_length))["input_ids"]) > max_length

    # --- model outputs ----------------------------------------------------------------------------

    @classmethod
    def reduce(cls, logits, labels=None):
        """`preprocess_logits_for_metrics` of `transformers.Trainer`: keep evaluation memory small."""
        return logits.argmax(dim=-1) if cls.argmax_for_metrics else logits

    def per_feature(self, output: ModelOutput) -> list:
        """`forward`'s output -> one numpy value per feature."""
        return list(_numpy(output.logits))

    def per_row(self, hidden: torch.Tensor, attention_mask: torch.Tensor, lengths: Sequence[int]) -> list:
        """One numpy value per model row (its real positions only), from `scores`."""
        return list(_numpy(self.scores(hidden, attention_mask)))

    @staticmethod
    def merge_rows(values: list) -> Any:
        """A feature's value from the values of its model rows (`per_row`)."""
        return values[0]

    @staticmethod
    def join(values: list) -> Any:
        """Per-feature values -> the logits form `decode` reads."""
        return values

    # --- answers and metrics ----------------------------------------------------------------------

    @classmethod
    def decode(cls, spec: TaskSpec, examples, features, logits) -> list[dict[str, Any]]:
        raise NotImplementedError

    @classmethod
    def evaluate(cls, spec: TaskSpec, examples, features, predictions, label_ids) -> dict[str, float]:
        """Metrics of Trainer's (reduced) predictions for these examples and features."""
        groups = [ex.get("group") for ex in examples] if "group" in examples[0] else None
        return compute_metrics(spec, predictions.tolist(), label_ids.tolist(), groups=groups)


class _PooledHead(Head):
    """A linear layer on the pooled sequence (state names `classifier.weight`, `classifier.bias`)."""

    def __init__(self, hidden_size: int, num_labels: int, *, pooling: str, dropout: float) -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def features(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """What the linear layer reads: (B, T, H) -> (B, H), the pooled sequence."""
        return pool(hidden, attention_mask, self.pooling)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, num_labels)."""
        return self.classifier(self.dropout(features))

    def scores(self, hidden, attention_mask):
        return self.classify(self.features(hidden, attention_mask))


class ClassificationHead(_PooledHead):
    """Sequence classification: cross-entropy over the labels."""

    task_type = "classification"

    def forward(self, hidden, attention_mask, labels=None, **_) -> SequenceClassifierOutput:
        logits = self.scores(hidden, attention_mask)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def decode(cls, spec, examples, features, logits):
        results = []
        for row in logits:
            probs = _softmax(np.asarray(row))
            names = {name: round(float(p), 6) for name, p in zip(spec.labels, probs, strict=True)}
            results.append({"label": spec.labels[int(probs.argmax())], "probabilities": names})
        return results


class RegressionHead(_PooledHead):
    """One score (num_labels 1), mean squared error."""

    task_type = "regression"
    argmax_for_metrics = False

    def classify(self, features):
        return super().classify(features).squeeze(-1)

    def forward(self, hidden, attention_mask, labels=None, **_) -> SequenceClassifierOutput:
        logits = self.scores(hidden, attention_mask)
        loss = F.mse_loss(logits, labels.to(logits.dtype)) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def decode(cls, spec, examples, features, logits):
        return [{"score": float(np.asarray(row).reshape(-1)[0])} for row in logits]


class _SeparatePairs(_PooledHead):
    """Text pairs encoded separately (`PromptConfig.pair_encoding` "separate", Sentence-BERT): each
    text is its own model row, through the same backbone and prompt, pooled to u and v; the linear
    layer reads [u, v, |u-v|, u*v] (4H features). `scores` takes the rows of a batch of B pairs
    stacked as (2B, T, H): the B first texts, then the B second texts (`PromptModel.forward`)."""

    def __init__(self, hidden_size: int, num_labels: int, *, pooling: str, dropout: float) -> None:
        super().__init__(4 * hidden_size, num_labels, pooling=pooling, dropout=dropout)

    def features(self, hidden, attention_mask):
        u, v = pool(hidden, attention_mask, self.pooling).chunk(2)  # (2B, H) -> (B, H) each
        return pair_features(u, v)

    @staticmethod
    def rows_of(feature):
        return pair_rows(feature)

    @classmethod
    def num_rows(cls, feature):
        return 2

    @classmethod
    def truncated(cls, example, tokenizer, max_length):
        cut = _cut(max_length)
        texts = [example["text"], example.get("text_pair") or ""]
        return any(len(tokenizer(text, **cut)["input_ids"]) > max_length for text in texts)

    def per_row(self, hidden, attention_mask, lengths):
        # a served batch mixes rows of many tasks and features: each row's pooled vector (H,), and
        # `merge_rows` joins a feature's two
        return list(_numpy(pool(hidden, attention_mask, self.pooling)))

    def merge_rows(self, values):  # an instance's method: it needs the linear layer
        weight = self.classifier.weight
        u, v = torch.as_tensor(np.stack(values)).to(weight.device, weight.dtype).unsqueeze(1)  # (1, H) each
        return _numpy(self.classify(pair_features(u, v)))[0]


def pair_features(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, H), (B, H) -> (B, 4H): [u, v, |u-v|, u*v], the Sentence-BERT classifier's input."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


class PairClassificationHead(ClassificationHead, _SeparatePairs):
    """Classification of text pairs encoded separately (see `_SeparatePairs`)."""


class PairRegressionHead(RegressionHead, _SeparatePairs):
    """Regression on text pairs encoded separately (see `_SeparatePairs`)."""


class ChoiceHead(_PooledHead):
    """Multiple choice: one score per (context, choice) row, cross-entropy over an example's choices.

    Inputs are (batch, choices, length); `forward` takes the rows flattened (`flatten`) and `batch`.
    """

    task_type = "multiple_choice"

    @staticmethod
    def flatten(tensor):
        return tensor.flatten(0, 1) if tensor is not None else None

    @staticmethod
    def rows_of(feature):
        return [
            {k: feature[k][c] for k in SEQUENCE_KEYS if k in feature}
            for c in range(len(feature["input_ids"]))
        ]

    @classmethod
    def num_rows(cls, feature):
        return len(feature["input_ids"])

    @classmethod
    def truncated(cls, example, tokenizer, max_length):
        cut = _cut(max_length)
        return any(
            len(tokenizer(example["context"], c, **cut)["input_ids"]) > max_length for c in example["choices"]
        )

    def forward(self, hidden, attention_mask, labels=None, *, batch=None, **_) -> MultipleChoiceModelOutput:
        logits = self.scores(hidden, attention_mask).view(batch or 1, -1)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return MultipleChoiceModelOutput(loss=loss, logits=logits)

    def per_row(self, hidden, attention_mask, lengths):
        return list(_numpy(self.scores(hidden, attention_mask))[:, 0])

    @staticmethod
    def merge_rows(values):
        return np.array(values, dtype=np.float32)

    @classmethod
    def decode(cls, spec, examples, features, logits):
        results = []
        for row in logits:
            probs = _softmax(np.asarray(row))
            results.append(
                {"label": int(probs.argmax()), "probabilities": [round(float(p), 6) for p in probs]}
            )
        return results


class TokenHead(Head):
    """Per-token labels; positions labelled -100 (special tokens, non-first sub-words) are ignored."""

    task_type = "token_classification"

    def __init__(self, hidden_size: int, num_labels: int, *, dropout: float, **_) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def scores(self, hidden, attention_mask):
        return self.classifier(self.dropout(hidden))

    def forward(self, hidden, attention_mask, labels=None, **_) -> TokenClassifierOutput:
        logits = self.scores(hidden, attention_mask)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def truncated(cls, example, tokenizer, max_length):
        words = list(example["tokens"]) + predicate_marker(tokenizer, example)
        return len(tokenizer(words, is_split_into_words=True, **_cut(max_length))["input_ids"]) > max_length

    def per_row(self, hidden, attention_mask, lengths):
        rows = _numpy(self.scores(hidden, attention_mask))
        return [row[:length] for row, length in zip(rows, lengths, strict=True)]

    @staticmethod
    def _word_tags(spec, examples, features, token_ids, fill_id: int = 0) -> list[list[str]]:
        """Word-level tag names, from each word's first sub-word."""
        word_ids = [f["word_ids"] for f in features]
        lengths = [len(ex["tokens"]) for ex in examples]
        per_word = word_predictions(word_ids, token_ids, num_words=lengths, fill_id=fill_id)
        return [[spec.labels[i] for i in ids] for ids in per_word]

    @classmethod
    def decode(cls, spec, examples, features, logits):
        tags = cls._word_tags(spec, examples, features, [row.argmax(-1) for row in logits])
        return [
            {"tokens": ex["tokens"], "tags": t, "entities": spans_from_tags(ex["tokens"], t)}
            for ex, t in zip(examples, tags, strict=True)
        ]

    @classmethod
    def evaluate(cls, spec, examples, features, predictions, label_ids):
        # words cut off by truncation count as "O"
        tags = cls._word_tags(spec, examples, features, predictions, fill_id=spec.labels.index("O"))
        return compute_metrics(spec, tags, [list(ex["tags"]) for ex in examples])


class SpanHead(Head):
    """Extractive QA: a start and an end logit per token; the loss averages the two cross-entropies."""

    task_type = "question_answering"
    label_names = ("start_positions", "end_positions")
    argmax_for_metrics = False

    def __init__(self, hidden_size: int, num_labels: int = 2, **_) -> None:
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def scores(self, hidden, attention_mask):
        start_logits, end_logits = self.qa_outputs(hidden).unbind(dim=-1)
        if attention_mask is not None:  # padding can never be an answer boundary
            masked = torch.finfo(start_logits.dtype).min
            start_logits = start_logits.masked_fill(attention_mask == 0, masked)
            end_logits = end_logits.masked_fill(attention_mask == 0, masked)
        return torch.stack([start_logits, end_logits], dim=1)  # (B, 2, T)

    def forward(
        self, hidden, attention_mask, start_positions=None, end_positions=None, **_
    ) -> QuestionAnsweringModelOutput:
        start_logits, end_logits = self.scores(hidden, attention_mask).unbind(dim=1)
        loss = None
        if start_positions is not None and end_positions is not None:
            length = start_logits.shape[1]
            start = start_positions.clamp(0, length - 1)
            end = end_positions.clamp(0, length - 1)
            loss = (F.cross_entropy(start_logits, start) + F.cross_entropy(end_logits, end)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)

    @classmethod
    def truncated(cls, example, tokenizer, max_length):
        return False  # QA slides a window over long contexts

    def per_feature(self, output):
        return list(zip(_numpy(output.start_logits), _numpy(output.end_logits), strict=True))

    def per_row(self, hidden, attention_mask, lengths):
        pairs = _numpy(self.scores(hidden, attention_mask))
        return [(pair[0][:length], pair[1][:length]) for pair, length in zip(pairs, lengths, strict=True)]

    @staticmethod
    def join(values):
        return [start for start, _ in values], [end for _, end in values]

    @classmethod
    def decode(cls, spec, examples, features, logits):
        starts, ends = logits
        answers = postprocess_qa(examples, features, starts, ends)
        if spec.null_answers:  # SQuAD 2.0: nothing when the null score beats the span by the threshold
            nulls = squad2.null_scores(features, starts, ends)
            spans = squad2.span_scores(features, starts, ends)
            for ex in examples:
                if ex["id"] not in nulls or nulls[ex["id"]] - spans[ex["id"]] > spec.null_threshold:
                    answers[ex["id"]] = {"text": "", "start": 0, "end": 0}
        picked = [answers[ex["id"]] for ex in examples]
        return [{"answer": a["text"], "start": a["start"], "end": a["end"]} for a in picked]

    @classmethod
    def evaluate(cls, spec, examples, features, predictions, label_ids):
        if spec.null_answers:
            return squad2.squad2_metrics(examples, features, *predictions)
        answers = postprocess_qa(examples, features, *predictions)
        preds = {key: value["text"] for key, value in answers.items()}
        refs = {ex["id"]: list(ex["answers"]["text"]) for ex in examples}
        return compute_metrics(spec, preds, refs)


HEADS: dict[str, type[Head]] = {
    cls.task_type: cls for cls in (ClassificationHead, RegressionHead, ChoiceHead, TokenHead, SpanHead)
}


def head_class(task_type: str) -> type[Head]:
    """The head class of a task type (ValueError naming the known ones for another)."""
    try:
        return HEADS[task_type]
    except KeyError:
        raise ValueError(f"no head for task type {task_type!r} (known: {', '.join(HEADS)})") from None


# the heads of text pairs encoded separately (`PromptConfig.pair_encoding` "separate"), by task type
PAIR_HEADS: dict[str, type[Head]] = {
    cls.task_type: cls for cls in (PairClassificationHead, PairRegressionHead)
}


def build_head(
    task_type: str,
    hidden_size: int,
    num_labels: int,
    *,
    pooling: str,
    dropout: float,
    pair_encoding: str = "joint",
) -> Head:
    check_pair_encoding(task_type, pair_encoding)
    cls = PAIR_HEADS[task_type] if pair_encoding == "separate" else head_class(task_type)
    return cls(hidden_size, num_labels, pooling=pooling, dropout=dropout)
