"""Words of the command line's output: counts with their noun in the right number."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: float, word: str, many: str | None = None) -> str:
    """`count` and `word`, the word in the plural unless the count is exactly 1: "1 epoch",
    "0.4 epochs", "6000 examples". `many`: the plural where adding "s" is wrong ("entries")."""
    number = f"{round(count, 3):g}" if isinstance(count, float) else str(count)
    return f"{number} {word if count == 1 else (many or word + 's')}"
