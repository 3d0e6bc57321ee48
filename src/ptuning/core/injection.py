"""The one mechanism that hands per-layer prefix keys and values to a frozen encoder.

P-Tuning v2 prepends P trainable key and value vectors to the keys and values of every
self-attention layer; the attention mask grows by P columns. Older code passed them in as
`past_key_values`, a keyword that transformers 5.x renamed to `cache` (and that DeBERTa and MPNet
never had). We depend on no such keyword. Instead:

* the prefix for one forward pass lives in a context variable (`PrefixInjector.active`), and
* each self-attention module of the backbone reads its layer's slice right before the attention
  kernel, concatenates it to its keys and values, and calls `attend` below.

How a module reaches `attend` depends on the architecture, through one of two attachment points:

* ``interface``: models that route attention through transformers' public `AttentionInterface`
  registry (BERT, RoBERTa, ELECTRA, DistilBERT) are switched to an implementation registered
  under the name ``"ptuning"``; the mask is built by the SDPA mask builder.
* ``mpnet`` / ``deberta-v2``: models with their own attention arithmetic (a relative-position
  bias) get the module's `forward` replaced on the instance by a short function that reproduces
  the original arithmetic around `attend`. Prefix keys carry no position, so their columns of
  the relative-position bias are zero.

Either way the attention itself runs in `torch.nn.functional.scaled_dot_product_attention`, the
fast path. Position ids of the real tokens are not shifted by P (the reference implementation
shifted them for BERT through `past_key_values_length`): a fully masked prefix then gives exactly
the plain backbone, and the whole position range stays available to the text.
"""

from __future__ import annotations

import contextvars
import math
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ..errors import BackboneError

IMPLEMENTATION_NAME = "ptuning"

# model_type -> (attachment, self-attention class name)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "bert": ("interface", "BertSelfAttention"),
    "roberta": ("interface", "RobertaSelfAttention"),
    "electra": ("interface", "ElectraSelfAttention"),
    "distilbert": ("interface", "DistilBertSelfAttention"),
    "mpnet": ("mpnet", "MPNetSelfAttention"),
    "deberta-v2": ("deberta-v2", "DisentangledSelfAttention"),
}


@dataclass
class LayerPrefix:
    """Prefix of one layer: keys and values (batch, heads, P, head_dim) and mask (batch, P), True = attend.

    With `record`, the layer adds no prefix and instead hands its own keys and values of the tokens
    (batch, heads, T, head_dim) to `record(key, value)` (how `prompts.vocabulary_prefix` reads them)."""

    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor | None = None
    record: Callable[[torch.Tensor, torch.Tensor], None] | None = None


@dataclass
class PrefixState:
    owner: PrefixInjector  # the injector this prefix is meant for (compared by identity)
    layers: dict[int, LayerPrefix]
    consumed: set[int] = field(default_factory=set)  # the layers whose attention read their prefix


_ACTIVE: contextvars.ContextVar[PrefixState | None] = contextvars.ContextVar("ptuning_prefix", default=None)


def _layer_prefix(module: nn.Module) -> LayerPrefix | None:
    state = _ACTIVE.get()
    if state is None or getattr(module, "_ptuning_injector", None) is not state.owner:
        return None
    prefix = state.layers.get(module._ptuning_layer)
    if prefix is not None:
        state.consumed.add(module._ptuning_layer)
    return prefix


def _prefix_columns(
    mask: torch.Tensor | None, like: torch.Tensor, batch: int, prefix_len: int
) -> torch.Tensor:
    """Mask columns for the prefix, in the dtype convention of `like` (bool: True = attend; float: additive)."""
    if mask is None:
        keep = torch.ones(batch, prefix_len, dtype=torch.bool, device=like.device)
    else:
        keep = mask.to(device=like.device, dtype=torch.bool)
    keep = keep[:, None, None, :]  # (batch, 1, 1, P)
    if like.dtype == torch.bool:
        return keep
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    return torch.where(keep, zero, torch.finfo(like.dtype).min)


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    prefix: LayerPrefix | None,
    *,
    scale: float | None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention over (prefix + tokens).

    query (B, h, T, d), key/value (B, h, S, d); `mask` is None, a bool mask (True = attend) or an
    additive float mask, broadcastable to (B, h, T, S). Returns (B, h, T, d).
    """
    if prefix is not None and prefix.record is not None:
        prefix.record(key, value)
        prefix = None
    if prefix is not None:
        batch, _, q_len, _ = query.shape
        prefix_len = prefix.key.shape[2]
        key = torch.cat([prefix.key.to(key.dtype), key], dim=2)
        value = torch.cat([prefix.value.to(value.dtype), value], dim=2)
        if mask is not None or prefix.mask is not None:  # no host sync: the caller drops an all-visible mask
            if mask is None:
                mask = torch.ones(
                    batch, 1, q_len, key.shape[2] - prefix_len, dtype=torch.bool, device=query.device
                )
            mask = mask.expand(batch, mask.shape[1], q_len, mask.shape[-1])
            columns = _prefix_columns(prefix.mask, mask, batch, prefix_len)
            columns = columns.expand(batch, mask.shape[1], q_len, prefix_len)
            mask = torch.cat([columns, mask], dim=-1)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p, scale=scale)


# --- attachment 1: transformers' AttentionInterface --------------------------------------------


def _interface_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **_):
    out = attend(query, key, value, attention_mask, _layer_prefix(module), scale=scaling, dropout_p=dropout)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(IMPLEMENTATION_NAME, _interface_attention)
AttentionMaskInterface.register(IMPLEMENTATION_NAME, sdpa_mask)


# --- attachment 2: per-instance forward for attention with a relative-position bias ------------


def _to_additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if mask is None or mask.dtype != torch.bool:
        return None if mask is None else mask.to(dtype)
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)


def _mpnet_forward(
    self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **_
):
    batch, length, _ = hidden_states.shape
    shape = (batch, length, -1, self.attention_head_size)
    q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))
    bias = _to_additive(attention_mask, q.dtype)
    if position_bias is not None:
        bias = position_bias.to(q.dtype) if bias is None else bias + position_bias.to(q.dtype)
    dropout_p = self.dropout.p if self.training else 0.0
    context = attend(
        q, k, v, bias, _layer_prefix(self), scale=1 / math.sqrt(self.attention_head_size), dropout_p=dropout_p
    )
    out = self.o(context.transpose(1, 2).reshape(batch, length, -1))
    return (out, None) if output_attentions else (out,)


def _deberta_forward(
    self,
    hidden_states,
    attention_mask,
    output_attentions=False,
    query_states=None,
    relative_pos=None,
    rel_embeddings=None,
):
    if query_states is None:
        query_states = hidden_states
    heads = self.num_attention_heads
    q = self.transpose_for_scores(self.query_proj(query_states), heads)  # (B*h, T, d)
    k = self.transpose_for_scores(self.key_proj(hidden_states), heads)
    v = self.transpose_for_scores(self.value_proj(hidden_states), heads)
    scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
    bias = None
    if self.relative_attention:
        bias = self.disentangled_attention_bias(
            q, k, relative_pos, self.pos_dropout(rel_embeddings), scale_factor
        )  # already scaled, (B*h, T, T)
    batch = hidden_states.shape[0]
    q, k, v = (t.view(batch, heads, t.shape[-2], t.shape[-1]) for t in (q, k, v))
    # DeBERTa masks query rows too (an outer product); keep only the key side so no row is empty.
    key_mask = (
        attention_mask.bool().amax(dim=-2, keepdim=True)
        if attention_mask.dim() == 4
        else attention_mask.bool()
    )
    additive = _to_additive(key_mask, q.dtype)
    if bias is not None:
        additive = additive + bias.view(batch, heads, bias.shape[-2], bias.shape[-1]).to(q.dtype)
    scale = 1 / math.sqrt(q.shape[-1] * scale_factor)
    dropout_p = self.dropout.p if self.training else 0.0
    context = attend(q, k, v, additive, _layer_prefix(self), scale=scale, dropout_p=dropout_p)
    context = context.transpose(1, 2).reshape(batch, context.shape[2], -1)
    return (context, None)


_FORWARDS = {"mpnet": _mpnet_forward, "deberta-v2": _deberta_forward}


def supported_model_types() -> list[str]:
    return sorted(ARCHITECTURES)


def attention_modules(backbone: nn.Module) -> list[nn.Module]:
    """The self-attention module of each layer, bottom to top."""
    model_type = backbone.config.model_type
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"deep prompts are not wired for model type {model_type!r}; supported: {', '.join(supported_model_types())}"
        )
    class_name = ARCHITECTURES[model_type][1]
    return [m for m in backbone.modules() if type(m).__name__ == class_name]


class PrefixInjector:
    """Attaches to a backbone once; `active(layers)` makes a prefix visible for one forward pass.

    Use `PrefixInjector.attach(backbone)`: several prompt models (tasks) may share one backbone,
    and they then share its one injector.
    """

    @classmethod
    def attach(cls, backbone: nn.Module) -> PrefixInjector:
        injector = getattr(backbone, "_ptuning_injector", None)
        if injector is None:
            injector = cls(backbone)
            # stored outside nn.Module's registries so it is neither a submodule nor state
            object.__setattr__(backbone, "_ptuning_injector", injector)
        return injector

    def __init__(self, backbone: nn.Module) -> None:
        self.modules = attention_modules(backbone)
        model_type = backbone.config.model_type
        if not self.modules:
            raise BackboneError(
                f"no self-attention module ({ARCHITECTURES[model_type][1]}) found in this {model_type} "
                f"backbone ({type(backbone).__name__}), so deep prompts cannot be injected"
            )
        layers = getattr(backbone.config, "num_hidden_layers", None)
        if layers is not None and len(self.modules) != layers:
            raise BackboneError(
                f"found {len(self.modules)} {ARCHITECTURES[model_type][1]} modules in a {layers}-layer "
                f"{model_type} backbone: the injection expects one per layer (a changed transformers "
                "release, or a model that nests another?)"
            )
        self.backbone_config = backbone.config
        attachment = ARCHITECTURES[model_type][0]
        for index, module in enumerate(self.modules):
            # a direct reference, not an id(): copy.deepcopy maps it to the copied injector
            object.__setattr__(module, "_ptuning_injector", self)
            module._ptuning_layer = index
            if attachment in _FORWARDS:
                module.forward = types.MethodType(_FORWARDS[attachment], module)
        if attachment == "interface":
            backbone.set_attn_implementation(IMPLEMENTATION_NAME)

    @property
    def num_layers(self) -> int:
        return len(self.modules)

    @contextmanager
    def active(self, layers: dict[int, LayerPrefix]) -> Iterator[None]:
        """`layers` (layer index -> prefix) visible to the attention of this injector's backbone for
        the forward passes inside the block. A block that ran without error but left a layer's
        prefix unread raises: the attention modules were not reached through the injection (a
        replaced forward, another attention implementation), which would otherwise run silently
        without a prompt."""
        state = PrefixState(owner=self, layers=layers)
        token = _ACTIVE.set(state)
        try:
            yield
        finally:
            _ACTIVE.reset(token)
        unread = sorted(set(layers) - state.consumed)
        if unread:
            raise RuntimeError(
                f"the prefix of layer(s) {unread} was not read by their attention: the backbone's "
                f"attention no longer goes through the ptuning injection (attention implementation "
                f"{getattr(self.backbone_config, '_attn_implementation', '?')!r})"
            )
