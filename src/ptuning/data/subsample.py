"""A seeded subsample of a task's examples."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ptuning.data.readers import Example


def subsample(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """`n` examples drawn without replacement with `random.Random(seed)`, kept in their original order
    (all of them, copied, when `n` is None or not smaller than the number of examples)."""
    if n is None or n >= len(examples):
        return list(examples)
    if n < 0:
        raise ValueError(f"cannot take {n} examples")
    chosen = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in chosen]
