"""One linear head per task type, reading the encoder's last hidden states (no verbalizer)."""

from __future__ import annotations

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


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """(B, T, H) -> (B, H): the first token, or the mean over unmasked tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class SequenceHead(nn.Module):
    """Classification (cross-entropy), regression (num_labels == 1, MSE) and multiple choice.

    Multiple choice scores each (context, choice) row with one logit; the model reshapes the
    scores to (batch, num_choices) and the loss is cross-entropy over choices.
    """

    def __init__(
        self, hidden_size: int, num_labels: int, *, task_type: str, pooling: str, dropout: float
    ) -> None:
        super().__init__()
        self.task_type = task_type
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden, attention_mask, labels=None, num_choices: int | None = None) -> ModelOutput:
        logits = self.classifier(self.dropout(pool(hidden, attention_mask, self.pooling)))
        if self.task_type == "multiple_choice":
            logits = logits.view(-1, num_choices)
            loss = F.cross_entropy(logits, labels) if labels is not None else None
            return MultipleChoiceModelOutput(loss=loss, logits=logits)
        if self.task_type == "regression":
            logits = logits.squeeze(-1)
            loss = F.mse_loss(logits, labels.to(logits.dtype)) if labels is not None else None
        else:
            loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class TokenHead(nn.Module):
    """Per-token labels; positions labelled -100 (special tokens, non-first sub-words) are ignored."""

    def __init__(self, hidden_size: int, num_labels: int, *, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden, attention_mask, labels=None) -> TokenClassifierOutput:
        logits = self.classifier(self.dropout(hidden))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)


class SpanHead(nn.Module):
    """Extractive QA: a start and an end logit per token; the loss averages the two cross-entropies."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(
        self, hidden, attention_mask, start_positions=None, end_positions=None
    ) -> QuestionAnsweringModelOutput:
        start_logits, end_logits = self.qa_outputs(hidden).unbind(dim=-1)
        if attention_mask is not None:  # padding can never be an answer boundary
            masked = torch.finfo(start_logits.dtype).min
            start_logits = start_logits.masked_fill(attention_mask == 0, masked)
            end_logits = end_logits.masked_fill(attention_mask == 0, masked)
        loss = None
        if start_positions is not None and end_positions is not None:
            length = start_logits.shape[1]
            start = start_positions.clamp(0, length - 1)
            end = end_positions.clamp(0, length - 1)
            loss = (F.cross_entropy(start_logits, start) + F.cross_entropy(end_logits, end)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)


def build_head(
    task_type: str, hidden_size: int, num_labels: int, *, pooling: str, dropout: float
) -> nn.Module:
    if task_type in ("classification", "regression", "multiple_choice"):
        return SequenceHead(hidden_size, num_labels, task_type=task_type, pooling=pooling, dropout=dropout)
    if task_type == "token_classification":
        return TokenHead(hidden_size, num_labels, dropout=dropout)
    if task_type == "question_answering":
        return SpanHead(hidden_size)
    raise ValueError(f"no head for task type {task_type!r}")
