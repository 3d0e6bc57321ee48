"""Activation checkpointing of a backbone's layers that keeps the prefix in the recomputation.

A prompt in layer 0 needs the input gradient through every layer, so a frozen backbone still
keeps every layer's activations for the backward pass: most of p-tuning-v2's training memory.
Checkpointing keeps only each layer's input and recomputes the layer in the backward pass (one
more forward of the backbone per step, for activations of one layer at a time).

Transformers' own `gradient_checkpointing_enable` cannot be used as is: MPNet does not support it,
and its recomputation would run in the backward pass, outside the `PrefixInjector.active` block
that makes the prefix visible (the prefix lives in a context variable, see `core.injection`), so
the layer would be recomputed without its prefix. Here each layer's forward runs under
`torch.utils.checkpoint` (non-reentrant: the prefix tensors reach the layer by the context, not as
arguments, and still get their gradients), and the recomputation re-enters the prefix state that
was active when the layer first ran. Dropout masks are replayed from the saved RNG state.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import BackboneError
from .injection import _ACTIVE, PrefixState, attention_modules

_FLAG = "_ptuning_checkpointed"


def encoder_layers(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's layers, bottom to top: the `nn.ModuleList` whose items hold one self-attention
    module each (`encoder.layer` in BERT, MPNet and DeBERTa, `transformer.layer` in DistilBERT)."""
    attention = attention_modules(backbone)
    for module in backbone.modules():
        if not isinstance(module, nn.ModuleList) or len(module) != len(attention) or not attention:
            continue
        held = [{id(m) for m in layer.modules()} for layer in module]
        if all(id(a) in ids for a, ids in zip(attention, held, strict=True)):
            return list(module)
    raise BackboneError(
        f"no list of layers holding the {len(attention)} self-attention modules of this "
        f"{backbone.config.model_type} backbone was found, so its activations cannot be checkpointed"
    )


@contextmanager
def _within(state: PrefixState | None) -> Iterator[None]:
    token = _ACTIVE.set(state)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    forward = type(self).forward.__get__(self)
    if not torch.is_grad_enabled():  # no backward will follow: nothing to save or recompute
        return forward(*args, **kwargs)
    state = _ACTIVE.get()  # the prefix this layer reads now, and again when it is recomputed
    return checkpoint(
        forward, *args, use_reentrant=False, context_fn=lambda: (nullcontext(), _within(state)), **kwargs
    )


def set_activation_checkpointing(
    backbone: nn.Module, enabled: bool = True, *, every_n_layers: int = 1
) -> int:
    """Checkpoint (or stop checkpointing) the layers of `backbone`: every layer, or layers 0, n,
    2n, ... with `every_n_layers` n (less recomputation, more memory). Returns how many layers
    are checkpointed now.

    Works with or without a prompt (fine-tuning too), on every architecture the injection supports.
    The layer's forward is replaced on the instance (bound, so `copy.deepcopy` rebinds it)."""
    if every_n_layers < 1:
        raise ValueError(f"every_n_layers must be at least 1, not {every_n_layers}")
    count = 0
    for index, layer in enumerate(encoder_layers(backbone)):
        wanted = enabled and index % every_n_layers == 0
        if wanted and not getattr(layer, _FLAG, False):
            layer.forward = types.MethodType(_checkpointed_forward, layer)
        elif not wanted and getattr(layer, _FLAG, False):
            del layer.forward
        setattr(layer, _FLAG, wanted)
        count += wanted
    return count


def is_checkpointed(backbone: nn.Module) -> bool:
    return any(getattr(layer, _FLAG, False) for layer in encoder_layers(backbone))
