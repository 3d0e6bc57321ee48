"""Shallow layers computed once: reuse the frozen lower layers' output across epochs.

When deep prompts sit only in the top k of L layers (``PromptConfig.prompt_layers = k``), the
embeddings and layers 0 .. L-k-1 are frozen and see no prompt, so the hidden states entering layer
L-k are a fixed function of the example. `ShallowCache` computes them once for every training
feature, with the lower layers in eval mode (no dropout), keeps them in memory (fp32 by default;
bf16 halves the memory at the cost of exactness), and, while the model is in training mode, runs
only the top k layers on them: the embeddings are skipped and the lower layers are taken out of the
encoder for that forward pass. Evaluation (eval mode) always runs the whole model.

Because the lower layers never produced gradients (they are frozen and their input needs none), a
cached step saves their forward pass and nothing else: the cost of a step falls from roughly
L forward + k backward layers to k forward + k backward layers.

Lookup is by content: a batch row's key is its unpadded input ids (and token type ids), so no
index has to travel through the collator or the Trainer. Padding positions of a batch get zeros;
they are masked out as keys in every top layer and ignored by every head (CLS / masked-mean
pooling, -100 token labels, masked span logits), so the loss equals the uncached loss with the
lower layers' dropout off. Rows that miss the cache (none, in `ptuning train`) send the whole
batch through the uncached path.

Supported: BERT-family encoders whose layers sit in ``backbone.encoder.layer`` and whose
embeddings module is ``backbone.embeddings`` (BERT, RoBERTa, ELECTRA), with right padding.
Other architectures raise `ShallowCacheError`.
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .config import PAIR_PREFIX, pair_rows

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "electra")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


class ShallowCacheError(UserError, ValueError):
    """The model or configuration cannot use a shallow-layer cache; the message says why.

    A `ptuning.errors.UserError`, so `ptuning train` prints it as one line."""


def _key(ids: torch.Tensor, types_: torch.Tensor | None) -> bytes:
    key = ids.to(torch.int32).cpu().numpy().tobytes()
    if types_ is not None:
        key += b"|" + types_.to(torch.int8).cpu().numpy().tobytes()
    return key


def _real_lengths(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> list[int]:
    if attention_mask is None:
        return [input_ids.shape[1]] * input_ids.shape[0]
    lengths = attention_mask.sum(dim=1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    right_padded = (attention_mask.bool() == (positions[None, :] < lengths[:, None])).all()
    if not bool(right_padded):
        raise ShallowCacheError(
            "the shallow cache needs right padding (attention masks of the form 1..1 0..0)"
        )
    return lengths.tolist()


class ShallowCache:
    """Hidden states entering layer L-k of every training feature; installed on one PromptModel."""

    def __init__(self, model: nn.Module, *, dtype: torch.dtype = torch.float32) -> None:
        config = model.prompt_config
        backbone = model.backbone
        model_type = backbone.config.model_type
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ShallowCacheError(
                f"the shallow cache supports {', '.join(SUPPORTED_MODEL_TYPES)} encoders, not {model_type!r}"
            )
        if not config.deep or not config.freezes_backbone:
            raise ShallowCacheError(
                f"the shallow cache needs a deep prompt on a frozen backbone (p-tuning-v2 or prefix-tuning), "
                f"not {config.method!r}: with {config.method} the lower layers' output changes as it trains"
            )
        layers = backbone.encoder.layer
        num_layers = len(layers)
        if config.prompt_layers is None or config.prompt_layers >= num_layers:
            raise ShallowCacheError(
                f"the shallow cache needs prompts in only the top k layers (--prompt-layers k, k < {num_layers}); "
                "with prompts in every layer no layer's output is fixed"
            )
        self.model = model
        self.dtype = dtype
        self.num_layers = num_layers
        self.top = config.prompt_layers
        self.split = num_layers - self.top  # first layer that runs during cached training
        self.entries: dict[bytes, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self.build_seconds = 0.0
        self._pending: torch.Tensor | None = None
        self._accepts_types = getattr(model, "_accepts_token_type_ids", True)
        self._install()

    # --- building -----------------------------------------------------------------------------

    @contextmanager
    def _lower_only(self):
        """The backbone with only layers 0 .. L-k-1: its output is the input of layer L-k."""
        encoder = self.model.backbone.encoder
        full = encoder.layer
        encoder.layer = nn.ModuleList(list(full)[: self.split])
        try:
            yield
        finally:
            encoder.layer = full

    @torch.no_grad()
    def build(
        self,
        features: Sequence[dict[str, Any]],
        collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
        *,
        batch_size: int = 64,
        device: torch.device | str | None = None,
    ) -> ShallowCache:
        """Compute and store the cached states of `features` (the lower layers in eval mode)."""
        start = time.perf_counter()
        backbone = self.model.backbone
        was_training = backbone.training
        original_device = next(backbone.parameters()).device
        device = torch.device(device) if device is not None else original_device
        backbone.to(device)
        backbone.eval()
        features = [row for feature in features for row in _sequences(feature)]
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        try:
            with self._lower_only():
                for begin in range(0, len(order), batch_size):
                    chunk = [features[i] for i in order[begin : begin + batch_size]]
                    batch = collator(chunk)
                    ids = batch["input_ids"]
                    mask = batch.get("attention_mask")
                    types_ = batch.get("token_type_ids") if self._accepts_types else None
                    kwargs = {"attention_mask": mask.to(device)} if mask is not None else {}
                    if types_ is not None:
                        kwargs["token_type_ids"] = types_.to(device)
                    hidden = backbone(input_ids=ids.to(device), **kwargs).last_hidden_state
                    hidden = hidden.to("cpu", self.dtype)
                    for row, length in enumerate(_real_lengths(mask, ids)):
                        key = _key(ids[row, :length], None if types_ is None else types_[row, :length])
                        self.entries[key] = hidden[row, :length].clone()
        finally:
            backbone.to(original_device)
            backbone.train(was_training)
        self.build_seconds = time.perf_counter() - start
        return self

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.entries.values())

    def summary(self) -> dict[str, Any]:
        return {
            "entries": len(self.entries),
            "bytes": self.nbytes,
            "dtype": str(self.dtype).removeprefix("torch."),
            "cached_layers": self.split,
            "trained_layers": self.top,
            "build_seconds": round(self.build_seconds, 2),
            "hits": self.hits,
            "misses": self.misses,
        }

    def describe(self) -> str:
        s = self.summary()
        return (
            f"shallow cache: layers 0-{self.split - 1} of {self.num_layers} computed once for {s['entries']:,} "
            f"features ({s['bytes'] / 2**20:.1f} MiB {s['dtype']}, {s['build_seconds']:.1f} s); "
            f"training runs layers {self.split}-{self.num_layers - 1} only"
        )

    # --- lookup during training -------------------------------------------------------------

    def lookup(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """The batch's cached states, zero-padded to its length; None if any row is missing."""
        lengths = _real_lengths(attention_mask, input_ids)
        types_ = token_type_ids if self._accepts_types else None
        rows = []
        for row, length in enumerate(lengths):
            key = _key(input_ids[row, :length], None if types_ is None else types_[row, :length])
            hit = self.entries.get(key)
            if hit is None:
                self.misses += 1
                return None
            rows.append(hit)
        self.hits += len(rows)
        batch, seq = input_ids.shape
        out = rows[0].new_zeros(batch, seq, rows[0].shape[-1])
        for row, states in enumerate(rows):
            out[row, : states.shape[0]] = states
        return out

    def _install(self) -> None:
        model = self.model
        if getattr(model, "_ptuning_shallow_cache", None) is not None:
            raise ShallowCacheError("this model already has a shallow cache")
        original_encode = model.encode
        embeddings = model.backbone.embeddings
        original_embed = embeddings.forward
        cache = self

        def embed(self_, *args, **kwargs):
            if cache._pending is not None:
                return cache._pending
            return original_embed(*args, **kwargs)

        def encode(
            self_, input_ids=None, attention_mask=None, token_type_ids=None, prefix_mask=None, prefix=None
        ):
            states = None
            if self_.training and input_ids is not None:
                states = cache.lookup(input_ids, attention_mask, token_type_ids)
            if states is None:
                return original_encode(input_ids, attention_mask, token_type_ids, prefix_mask, prefix)
            param = next(self_.backbone.parameters())
            cache._pending = states.to(
                param.device, param.dtype if param.dtype.is_floating_point else states.dtype
            )
            encoder = self_.backbone.encoder
            full = encoder.layer
            encoder.layer = nn.ModuleList(list(full)[cache.split :])
            try:
                return original_encode(input_ids, attention_mask, token_type_ids, prefix_mask, prefix)
            finally:
                encoder.layer = full
                cache._pending = None

        embeddings.forward = types.MethodType(embed, embeddings)
        model.encode = types.MethodType(encode, model)
        object.__setattr__(model, "_ptuning_shallow_cache", self)
        self._restore = (original_encode, original_embed)

    def remove(self) -> None:
        """Uninstall: the model runs uncached again (the stored states are dropped)."""
        model = self.model
        del model.encode  # the instance attribute; the class method shows through again
        del model.backbone.embeddings.forward
        object.__setattr__(model, "_ptuning_shallow_cache", None)
        self.entries.clear()


def _sequences(feature: dict[str, Any]) -> list[dict[str, Any]]:
    """The sequences a feature puts through the backbone: itself, and the second text of a pair
    encoded separately (its own model row, looked up by content like any other)."""
    return pair_rows(feature) if PAIR_PREFIX + "input_ids" in feature else [feature]


def attach_shallow_cache(
    model: nn.Module,
    features: Sequence[dict[str, Any]],
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    *,
    batch_size: int = 64,
    dtype: str | torch.dtype = "float32",
    device: torch.device | str | None = None,
) -> ShallowCache:
    """Install a shallow cache on `model` and fill it with `features` (the training set)."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ShallowCacheError(f"unknown cache dtype {dtype!r}; known: {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    cache = ShallowCache(model, dtype=dtype)
    return cache.build(features, collator, batch_size=batch_size, device=device)
