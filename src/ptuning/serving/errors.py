"""The serving engine's errors: each kind its own class, all `ptuning.errors.ServingError`s (the HTTP
app maps them to status codes), and `error_line`, the one-line form of an error message that the
command line and the HTTP app both print."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ServingError

__all__ = [
    "InvalidTaskNameError",
    "QueueFullError",
    "ShuttingDownError",
    "TaskExistsError",
    "UnknownTaskError",
]


class UnknownTaskError(ServingError, KeyError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        listing = ", ".join(self.known) if self.known else "none"
        super().__init__(f"unknown task {name!r}; known tasks: {listing}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class InvalidTaskNameError(ServingError, ValueError):
    """A task name that cannot be used (it appears in URLs)."""


class TaskExistsError(ServingError):
    """A task of that name is already served."""


class QueueFullError(ServingError):
    """The bounded queue has no room for the request; try again later."""


class ShuttingDownError(ServingError):
    """The batcher is closing and accepts no new work."""
