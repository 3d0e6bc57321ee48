"""A warning when a deep prompt's keys and values outgrow the backbone's own.

Why: at a learning rate too high for it (above all through the reparameterization MLP, where Adam
moves each of the output layer's weights by about the learning rate, so the prefix moves by about
`projection_hidden` times that), the prefix's keys grow within tens of steps to tens of times the
size of the backbone's own. The softmax then puts the attention on the prefix alone, every input
gets nearly the same representation, and the head can only learn the majority class: the run looks
like one that "did not learn the task", with nothing to say why. Measured on MiniLM / MRPC
(docs/results/quality.md): through the MLP at lr 2.1e-2 (P 8) the prefix's values in layer 0 were
32x the backbone's own after 20 steps, every pair's pooled embedding had cosine 1.000 with every
other, and F1 stayed at the majority class's 80.4; at 1e-3 the prefix stayed under the limit.

The check is cheap: once at the start, the backbone's own keys and values for a few vocabulary
tokens (one forward pass over P tokens); at each evaluation, the prefix's (the MLP once, no data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from ..core.prompts import PrefixEncoder, vocabulary_prefix

# The prefix's keys or values (mean norm per head, in any prompted layer) at this many times the
# backbone's own. Keys: the prefix's attention logits are that many times larger, and the softmax
# saturates on the prefix. Values: even a small attention share on the prefix outweighs the
# tokens' own values in what the layer passes on.
OUTGROWN = 10.0
# ... and grown at least this much in training: a prefix that starts that large (a random table on a
# randomly initialised model, whose own keys are tiny; a large --init-std) was set so, not trained so
GROWN = 2.0


@dataclass(frozen=True)
class PrefixScale:
    """The largest ratio of the prefix's mean key (or value) norm to the backbone's own, and where."""

    ratio: float
    layer: int
    part: str  # "keys" or "values"


def _norms(kv: torch.Tensor) -> torch.Tensor:
    """(2L, heads, P, head_dim) -> (2L,): the mean norm of a head's key or value vector, per layer."""
    return kv.float().norm(dim=-1).mean(dim=(1, 2))


@torch.no_grad()
def own_norms(model: torch.nn.Module, *, seed: int = 1) -> torch.Tensor:
    """(2L,): the backbone's own mean key and value norms per prompted layer, for P vocabulary tokens."""
    encoder: PrefixEncoder = model.prefix_encoder
    weight = encoder.embedding.weight
    # under --bf16 the frozen weights are held in bf16 and only run inside autocast (as in training)
    held = any(p.dtype == torch.bfloat16 for p in model.backbone.parameters())
    with torch.autocast(weight.device.type, dtype=torch.bfloat16, enabled=held):
        table = vocabulary_prefix(
            model.backbone, model.injector, encoder.layers, encoder.prefix_len, seed=seed
        )
    return _norms(encoder.layout(table))


@torch.no_grad()
def prefix_ratios(model: torch.nn.Module, own: torch.Tensor) -> torch.Tensor:
    """(2L,): the prefix's mean key and value norms per prompted layer over `own` (`own_norms`)."""
    encoder: PrefixEncoder = model.prefix_encoder
    return _norms(encoder.keys_and_values()) / own.to(encoder.embedding.weight.device).clamp_min(1e-12)


def prefix_scale(model: torch.nn.Module, own: torch.Tensor, among: torch.Tensor | None = None) -> PrefixScale:
    """The largest of `prefix_ratios`, and where (among the layers and parts `among` marks)."""
    return _largest(prefix_ratios(model, own), model.prefix_encoder.layers, among)


def _largest(ratios: torch.Tensor, layers: list[int], among: torch.Tensor | None = None) -> PrefixScale:
    if among is not None:
        ratios = ratios.where(among.to(ratios.device), torch.zeros_like(ratios))
    index = int(ratios.argmax())  # rows 2i, 2i+1: layer i's keys, values
    return PrefixScale(float(ratios[index]), layers[index // 2], ("keys", "values")[index % 2])


class PrefixWatch(TrainerCallback):
    """Says once, at the evaluation where it happens, that the prefix has outgrown the backbone's
    keys and values (`limit` times, and grown `GROWN` times since training began): why such a run
    stops learning, and what to change. `say` False: only `check`, for a caller that acts on it (a
    tuning trial is pruned there)."""

    def __init__(self, limit: float = OUTGROWN, *, say: bool = True) -> None:
        self.limit = limit
        self.say = say
        self.own: torch.Tensor | None = None
        self.start: torch.Tensor | None = None  # prefix_ratios when training began
        self.outgrown: PrefixScale | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.own = None
        if state.is_world_process_zero and isinstance(getattr(model, "prefix_encoder", None), PrefixEncoder):
            self.own = own_norms(model)
            self.start = prefix_ratios(model, self.own)

    def check(self, model: torch.nn.Module | None) -> PrefixScale | None:
        """The prefix's scale where it has outgrown the backbone's (first time only), else None."""
        if self.own is None or self.outgrown is not None or model is None:
            return None
        ratios = prefix_ratios(model, self.own)
        among = (ratios >= self.limit) & (ratios >= GROWN * self.start.to(ratios.device))
        if not bool(among.any()):
            return None
        scale = _largest(ratios, model.prefix_encoder.layers, among)
        self.outgrown = scale
        return scale

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        scale = self.check(model)
        if scale is None or not self.say:
            return
        through = (
            " (through the reparameterization MLP the default is 1e-3)"
            if model.prefix_encoder.projection
            else ""
        )
        print(
            f"warning: at epoch {float(state.epoch or 0.0):.3g} the prefix's {describe(scale)}: attention "
            "then goes to the prefix alone, every input gets nearly the same representation, and the "
            "validation metric stays where predicting one answer puts it. Train again with a lower --lr"
            + through,
            flush=True,
        )


def describe(scale: PrefixScale) -> str:
    """e.g. "values in layer 0 are 32x the size of the backbone's own"."""
    return f"{scale.part} in layer {scale.layer} are {scale.ratio:.0f}x the size of the backbone's own"
