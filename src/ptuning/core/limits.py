"""The bounds of the settings a run can be given, in one place: `ptuning train`, the search spaces of
`ptuning tune` and the checkpoint validator all check against these, so a setting that trains is a
setting whose checkpoint loads, and a search cannot propose what a run would refuse.

No imports beyond the standard library: the command line checks its options with these before any
model code loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Longer prompts than this are beyond any backbone's attention budget here (the built-in encoders
# take 512 positions) and a deep prefix of this length already takes ~1.5 GB of keys and values for
# a base-size model at batch 32.
MAX_PREFIX_LEN = 4096
# AdamW at a learning rate above 1 diverges in a few steps on every method here; the papers' largest
# is prompt tuning's 0.3.
MAX_LEARNING_RATE = 1.0
MAX_PROMPT_LAYERS = 10_000
MAX_EPOCHS = 10_000.0
MAX_BATCH_SIZE = 1 << 16


@dataclass(frozen=True)
class Bound:
    """`low < value` (or `low <= value` where `low_inclusive`) and `value <= high`, finite."""

    low: float
    high: float
    low_inclusive: bool = True
    whole: bool = False

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.low_inclusive:
            return f"{kind} from {self.low:g} to {self.high:g}"
        return f"{kind} > {self.low:g} and <= {self.high:g}"

    def admits(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.whole and value != int(value):
            return False
        above = value >= self.low if self.low_inclusive else value > self.low
        return above and value <= self.high


# setting (TrainConfig / PromptConfig field or `--space` parameter name) -> its bound
BOUNDS: dict[str, Bound] = {
    "prefix_len": Bound(1, MAX_PREFIX_LEN, whole=True),
    "lr": Bound(0.0, MAX_LEARNING_RATE, low_inclusive=False),
    "prompt_layers": Bound(1, MAX_PROMPT_LAYERS, whole=True),
    "epochs": Bound(0.0, MAX_EPOCHS, low_inclusive=False),
    "batch_size": Bound(1, MAX_BATCH_SIZE, whole=True),
    "prompt_dropout": Bound(0.0, 1.0),
    "head_dropout": Bound(0.0, 1.0),
}
ALIASES = {"learning_rate": "lr"}


def out_of_bounds(name: str, value: float) -> str | None:
    """None when `value` is within the bound of setting `name` (or `name` has none), else what is
    wrong, as "lr must be a number > 0 and <= 1, got 1e+308"."""
    bound = BOUNDS.get(ALIASES.get(name, name))
    if bound is None or bound.admits(value):
        return None
    shown = f"{value:g}" if isinstance(value, float) else repr(value)
    return f"{name} must be {bound.describe()}, got {shown}"


def check_setting(name: str, value: float) -> None:
    """Raise ValueError (one line) when `value` is outside the bound of setting `name`."""
    problem = out_of_bounds(name, value)
    if problem is not None:
        raise ValueError(problem)
