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
(a string input, a text field, each choice, each token) must hold a visible character (not only
spaces, controls or zero-width characters) and be valid Unicode (no unpaired surrogate, which is
what invalid UTF-8 on a command line decodes to). A classification or regression checkpoint that
recorded its training columns also takes them as keys (`{"review": ...}`, its label column
ignored), and one trained on text pairs needs the pair (`ptuning.data.inputs.parse_input`).
Answers are finite numbers: a model whose outputs overflow to NaN or infinity is an error, never
an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .core.precision import hold_frozen_in_bf16, resolve_precision
from .data import encode, make_collator
from .data.inputs import InputFormat, parse_input
from .decode import format_outputs
from .errors import CheckpointError
from .model import PromptModel


class Predictor:
    """One task's prompt model and tokenizer, answering raw inputs in batches (the input and output
    forms by task type are in this module's docstring); `tokenizer` None: the model's own.

        >>> from ptuning import Predictor
        >>> predictor = Predictor.from_checkpoint("outputs/sst2-p-tuning-v2")
        >>> predictor.predict(["a gripping, funny film", {"text": "dull and far too long"}])
        [{'label': 'positive', 'probabilities': {'negative': 0.03, 'positive': 0.97}}, ...]
    """

    def __init__(
        self,
        model: PromptModel,
        tokenizer=None,
        *,
        max_length: int = 256,
        batch_size: int = 32,
        bf16: bool | None = None,
        inputs: InputFormat | None = None,
        source: str = "",
    ) -> None:
        """`inputs`: the checkpoint's recorded input format, for `parse_input` (its trained column
        names, a required pair). `source`: the checkpoint, named by errors about its answers."""
        self.model = model.eval()
        self.inputs = inputs
        self.source = source
        self.precision = resolve_precision(bf16, next(model.parameters()).device.type, answers=True)
        if self.precision.bf16:
            hold_frozen_in_bf16(self.model)
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        if tokenizer is None:
            raise ValueError("Predictor needs a tokenizer: this model carries none (pass tokenizer=...)")
        self.tokenizer = tokenizer
        self.spec = model.spec
        limit = getattr(tokenizer, "model_max_length", max_length) or max_length
        self.max_length = min(max_length, limit, 512, model.max_text_length)
        self.batch_size = batch_size
        self.collate = make_collator(self.spec, tokenizer)

    @classmethod
    def from_checkpoint(cls, path, *, max_length: int | None = None, **kwargs) -> Predictor:
        """`max_length` None: the length the checkpoint was trained with (256 if it did not record one).
        `path`: a folder, or a `Checkpoint` already read; its config is read and checked once."""
        from .checkpoint import Checkpoint

        checkpoint = Checkpoint.read(path)
        # the method's own predictor (`ptuning.methods`): the same `predict`, whatever the model
        return checkpoint.method.hook("predictor")(checkpoint, max_length=max_length, **kwargs)

    @classmethod
    def from_prompt_checkpoint(cls, checkpoint, *, max_length: int | None = None, **kwargs) -> Predictor:
        """The predictor of a prompt-weights checkpoint (a `Checkpoint` already read)."""
        model = PromptModel.from_pretrained(checkpoint)
        max_length = max_length or checkpoint.max_seq_length or 256
        kwargs.setdefault("inputs", checkpoint.inputs)
        return cls(model, model.tokenizer, max_length=max_length, source=str(checkpoint), **kwargs)

    def prepare(self, inputs: Sequence[Any]) -> tuple[list[dict], list[dict], list[bool]]:
        """Examples, features and truncation flags (raises DataError naming the bad input)."""
        examples = [parse_input(self.spec, item, i, self.inputs) for i, item in enumerate(inputs)]
        flags = [self.model.head.truncated(ex, self.tokenizer, self.max_length) for ex in examples]
        features = encode(
            self.spec,
            examples,
            self.tokenizer,
            self.max_length,
            for_training=False,
            pair_encoding=self.model.prompt_config.pair_encoding,
        )
        return examples, features, flags

    @torch.no_grad()
    def logits(self, features: list[dict]) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
        """Raw model outputs per feature (QA: start and end logits)."""
        head = self.model.head
        values: list = []
        device = next(self.model.parameters()).device
        for start in range(0, len(features), self.batch_size):
            batch = self.collate(features[start : start + self.batch_size])
            with self.precision.autocast():
                out = self.model(**{k: v.to(device) for k, v in batch.items()})
            values.extend(head.per_feature(out))
        return head.join(values)

    def predict(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        examples, features, flags = self.prepare(inputs)
        logits = self.logits(features)
        check_finite(logits, self.source)
        return format_outputs(self.spec, examples, features, logits, flags)


def check_finite(logits, source: str = "") -> None:
    """Refuse model outputs holding NaN or infinity (CheckpointError): weights the validator let
    through can still overflow in the forward pass, and a NaN answer is no answer (nor JSON)."""
    parts = logits if isinstance(logits, tuple) else (logits,)
    for part in parts:
        for value in part:
            if not np.isfinite(np.asarray(value, dtype=np.float64)).all():
                where = f"checkpoint {source}" if source else "the checkpoint"
                raise CheckpointError(
                    f"{where}: the model's outputs overflow to NaN or infinity; expected finite scores "
                    "(its weights are too large for the forward pass: retrain, or lower the learning rate)"
                )
