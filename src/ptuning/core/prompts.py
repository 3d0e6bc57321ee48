"""Trainable prompts: deep prefixes for every layer (P-Tuning v2, prefix tuning) and input prompts (v1)."""

from __future__ import annotations

import torch
from torch import nn

from .injection import LayerPrefix, PrefixInjector


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast computes in on `device`'s type right now, None outside autocast."""
    kind = device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


def dropout_per_example(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout of `x` (a prompt expanded to the batch) with an independent mask per element.

    On the CPU the mask comes from 16-bit slices of 64-bit random integers, 4 elements per draw of
    the generator, where `nn.functional.dropout` draws a float per element: for MiniLM's P = 32
    prefix at batch 32 (4.7 M elements) that draw was most of a 65 ms step overhead. `p` is
    rounded to a multiple of 1/65536 and the kept elements scaled by the rounded keep rate, so the
    expectation is `x` exactly. Elsewhere (CUDA: a fused kernel) it is `nn.functional.dropout`."""
    if p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training=True)
    dropped = round(p * 65536)
    if dropped == 0:
        return x
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    draws = words.view(torch.int16)[: x.numel()].view(x.shape)  # uniform over -32768..32767
    keep = (draws >= dropped - 32768).to(x.dtype).mul_(65536 / (65536 - dropped))
    return x * keep


class PrefixEncoder(nn.Module):
    """Produces the prefix keys and values of the prompted layers.

    Without reparameterization the prefix is a table `Embedding(P, L*2*H)`; with it, the table is
    `Embedding(P, H)` passed through `Linear(H, h) -> Tanh -> Linear(h, L*2*H)`, as in the
    reference implementation. Either way the output is viewed as (batch, P, 2L, heads, head_dim).
    `fold()` returns the equivalent plain table, so a saved prompt needs no MLP at inference.
    """

    def __init__(
        self,
        prefix_len: int,
        layers: list[int],
        num_heads: int,
        head_dim: int,
        hidden_size: int,
        *,
        projection: bool = False,
        projection_hidden: int = 512,
        dropout: float = 0.1,
        init_std: float = 1.0,
        dropout_per_example: bool = False,
    ) -> None:
        super().__init__()
        self.prefix_len = prefix_len
        self.layers = list(layers)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.projection = projection
        out_dim = len(self.layers) * 2 * num_heads * head_dim
        if projection:
            self.embedding = nn.Embedding(prefix_len, hidden_size)
            self.mlp = nn.Sequential(
                nn.Linear(hidden_size, projection_hidden), nn.Tanh(), nn.Linear(projection_hidden, out_dim)
            )
        else:
            self.embedding = nn.Embedding(prefix_len, out_dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.dropout = nn.Dropout(dropout)
        self.dropout_per_example = dropout_per_example

    def table(self) -> torch.Tensor:
        """The (P, L*2*H) prefix table, through the MLP when reparameterized."""
        weight = self.embedding.weight
        return self.mlp(weight) if self.projection else weight

    def layout(self, table: torch.Tensor) -> torch.Tensor:
        """A (P, L*2*H) table as the keys and values of every prompted layer, (2L, heads, P, head_dim)."""
        return table.view(self.prefix_len, 2 * len(self.layers), self.num_heads, self.head_dim).permute(
            1, 2, 0, 3
        )

    def _stacked(self, dropout: bool = True) -> torch.Tensor:
        """Keys and values of every prompted layer, (2L, heads, P, head_dim)."""
        table = self.table()
        return self.layout(self.dropout(table) if dropout else table)

    def keys_and_values(self) -> torch.Tensor:
        """The prefix's keys and values without dropout, (2L, heads, P, head_dim)."""
        return self._stacked(dropout=False)

    def _weights_version(self) -> tuple:
        """Changes whenever a weight does: in place (optimizer step, load_state_dict) or replaced (.to())."""
        return tuple((id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())

    def inference_table(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """`_stacked()` computed once and kept while the weights stay the same (eval mode, no grad),
        in `dtype` (None: the weights' own): under autocast, the compute dtype, so that no layer
        casts its prefix again at every call.

        The cache is dropped by `train()` and recomputed when a weight changed (optimizer step,
        `load_state_dict`, a move to another device or dtype) or another dtype is asked for."""
        version = (self._weights_version(), dtype)
        cached = self.__dict__.get("_cache")
        if cached is None or cached[0] != version:
            with torch.no_grad():
                cached = (version, self._stacked().to(dtype or self.embedding.weight.dtype).contiguous())
            self.__dict__["_cache"] = cached
        return cached[1]

    def train(self, mode: bool = True) -> PrefixEncoder:
        self.__dict__.pop("_cache", None)
        return super().train(mode)

    def forward(self, batch_size: int, mask: torch.Tensor | None = None) -> dict[int, LayerPrefix]:
        """Per-layer prefixes for a batch; `mask` (batch, P) is True where the prefix is visible.

        In eval mode without autograd the keys and values come from `inference_table` (computed
        once); a host-side mask with every position visible is dropped (one check here, none in
        the attention of each layer), so no mask columns are built for it."""
        cached = not self.training and not torch.is_grad_enabled()
        per_example = self.training and self.dropout_per_example and self.dropout.p > 0
        if cached:
            kv = self.inference_table(autocast_dtype(self.embedding.weight.device))
        else:
            kv = self._stacked(dropout=not per_example)
        if mask is not None and mask.device.type == "cpu" and bool(mask.all()):
            mask = None
        kv = kv.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # (2L, batch, heads, P, head_dim)
        if per_example:  # an independent mask for each example (dropout of the expanded view)
            kv = dropout_per_example(kv, self.dropout.p)
        return {
            layer: LayerPrefix(key=kv[2 * i], value=kv[2 * i + 1], mask=mask)
            for i, layer in enumerate(self.layers)
        }

    @torch.no_grad()
    def fold(self) -> PrefixEncoder:
        """An equivalent encoder without the MLP: a plain table holding the MLP's output."""
        folded = PrefixEncoder(
            self.prefix_len,
            self.layers,
            self.num_heads,
            self.head_dim,
            hidden_size=1,
            projection=False,
            dropout=self.dropout.p,
            dropout_per_example=self.dropout_per_example,
        )
        folded.embedding.weight.copy_(self.table())
        folded.train(self.training)
        return folded.to(self.embedding.weight.device)


class InputPrompt(nn.Module):
    """P trainable vectors prepended to the input embeddings (Lester et al. 2021; P-tuning v1).

    Initialised from the embeddings of randomly sampled vocabulary tokens, which Lester et al.
    found to work better than random vectors.
    """

    def __init__(
        self,
        prefix_len: int,
        word_embeddings: nn.Embedding,
        *,
        dropout: float = 0.1,
        dropout_per_example: bool = False,
    ) -> None:
        super().__init__()
        self.prefix_len = prefix_len
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            rows = torch.randint(0, word_embeddings.num_embeddings, (prefix_len,), generator=generator)
            init = word_embeddings.weight[rows].detach().clone()
        self.embedding = nn.Parameter(init)
        self.dropout = nn.Dropout(dropout)
        self.dropout_per_example = dropout_per_example

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        batch = inputs_embeds.shape[0]
        if self.dropout_per_example:  # dropout of the expanded view: a mask per example
            prompt = self.embedding.unsqueeze(0).expand(batch, -1, -1)
            prompt = dropout_per_example(prompt, self.dropout.p) if self.training else prompt
        else:
            prompt = self.dropout(self.embedding).unsqueeze(0).expand(batch, -1, -1)
        return torch.cat([prompt.to(inputs_embeds.dtype), inputs_embeds], dim=1)


@torch.no_grad()
def vocabulary_prefix(
    backbone: nn.Module,
    injector: PrefixInjector,
    layers: list[int],
    prefix_len: int,
    *,
    seed: int = 0,
) -> torch.Tensor:
    """A (P, L*2*H) prefix table holding the keys and values the backbone itself computes, in each
    prompted layer, for P vocabulary tokens drawn at random (Li & Liang 2021 initialise the prefix
    with the activations of real words). The backbone runs once, in eval mode, on those P tokens."""
    embeddings = backbone.get_input_embeddings()
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, embeddings.num_embeddings, (1, prefix_len), generator=generator)
    ids = ids.to(embeddings.weight.device)
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def recorder(layer: int):
        return lambda key, value: captured.__setitem__(layer, (key, value))

    empty = embeddings.weight.new_zeros(1, 1, 0, 1)
    prefixes = {layer: LayerPrefix(key=empty, value=empty, record=recorder(layer)) for layer in layers}
    was_training = backbone.training
    backbone.eval()
    try:
        with injector.active(prefixes):
            backbone(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        backbone.train(was_training)
    missing = [layer for layer in layers if layer not in captured]
    if missing:
        raise RuntimeError(f"layers {missing} computed no keys and values: the injection is not attached")
    kv = torch.stack([t.float() for layer in layers for t in captured[layer]])  # (2L, 1, heads, P, head_dim)
    return kv[:, 0].permute(2, 0, 1, 3).reshape(prefix_len, -1)
