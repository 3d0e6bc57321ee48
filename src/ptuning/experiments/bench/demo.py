"""Random inputs for the tiny demo checkpoints of every task type (`ptuning.testing.make_checkpoints`):
what `load_test` sends."""

from __future__ import annotations

import random
from typing import Any

WORDS = [
    "the",
    "a",
    "film",
    "movie",
    "plot",
    "was",
    "dull",
    "gripping",
    "funny",
    "long",
    "short",
    "actor",
    "scene",
    "John",
    "Mary",
    "Paris",
    "London",
    "went",
    "home",
    "to",
    "from",
    "and",
    "but",
    "very",
    "not",
    "quite",
    "with",
    "story",
    "ending",
    "music",
    "great",
    "poor",
]


def _sentence(rng: random.Random, low: int = 3, high: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def make_input(task_type: str, rng: random.Random) -> Any:
    if task_type in ("classification", "regression"):
        if rng.random() < 0.3:
            return _sentence(rng)
        return (
            {"text": _sentence(rng), "text_pair": _sentence(rng)}
            if rng.random() < 0.5
            else {"text": _sentence(rng)}
        )
    if task_type == "multiple_choice":
        return {"context": _sentence(rng), "choices": [_sentence(rng, 2, 5), _sentence(rng, 2, 5)]}
    if task_type == "token_classification":
        return {"tokens": _sentence(rng).split()} if rng.random() < 0.5 else _sentence(rng)
    return {"question": _sentence(rng, 3, 6) + "?", "context": _sentence(rng, 20, 150)}
