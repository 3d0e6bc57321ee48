"""Trainable prompts: deep prefixes for every layer (P-Tuning v2, prefix tuning) and input prompts (v1)."""

from __future__ import annotations

import torch
from torch import nn

from .injection import LayerPrefix


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

    def table(self) -> torch.Tensor:
        """The (P, L*2*H) prefix table, through the MLP when reparameterized."""
        weight = self.embedding.weight
        return self.mlp(weight) if self.projection else weight

    def _stacked(self) -> torch.Tensor:
        """Keys and values of every prompted layer, (2L, heads, P, head_dim)."""
        kv = self.table().view(self.prefix_len, 2 * len(self.layers), self.num_heads, self.head_dim)
        return self.dropout(kv).permute(1, 2, 0, 3)

    def _weights_version(self) -> tuple:
        """Changes whenever a weight does: in place (optimizer step, load_state_dict) or replaced (.to())."""
        return tuple((id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())

    def inference_table(self) -> torch.Tensor:
        """`_stacked()` computed once and kept while the weights stay the same (eval mode, no grad).

        The cache is dropped by `train()` and recomputed when a weight changed (optimizer step,
        `load_state_dict`, a move to another device or dtype)."""
        version = self._weights_version()
        cached = self.__dict__.get("_cache")
        if cached is None or cached[0] != version:
            with torch.no_grad():
                cached = (version, self._stacked().contiguous())
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
        kv = self.inference_table() if cached else self._stacked()
        if mask is not None and mask.device.type == "cpu" and bool(mask.all()):
            mask = None
        kv = kv.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # (2L, batch, heads, P, head_dim)
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
        )
        folded.embedding.weight.copy_(self.table())
        folded.train(self.training)
        return folded.to(self.embedding.weight.device)


class InputPrompt(nn.Module):
    """P trainable vectors prepended to the input embeddings (Lester et al. 2021; P-tuning v1).

    Initialised from the embeddings of randomly sampled vocabulary tokens, which Lester et al.
    found to work better than random vectors.
    """

    def __init__(self, prefix_len: int, word_embeddings: nn.Embedding, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.prefix_len = prefix_len
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            rows = torch.randint(0, word_embeddings.num_embeddings, (prefix_len,), generator=generator)
            init = word_embeddings.weight[rows].detach().clone()
        self.embedding = nn.Parameter(init)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        prompt = self.dropout(self.embedding).to(inputs_embeds.dtype)
        prompt = prompt.unsqueeze(0).expand(inputs_embeds.shape[0], -1, -1)
        return torch.cat([prompt, inputs_embeds], dim=1)
