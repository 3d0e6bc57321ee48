"""The errors ptuning raises on purpose: one base, one class per kind of fault.

Every message is one line that names what was wrong (the file and line or record where there is
one) and what was expected. The command line prints a `UserError` (data, backbone and checkpoint
errors included) as ``ptuning <command>: error: <message>`` and exits with code 2; the HTTP server
answers a `ServingError` with its own status code. This module imports nothing, so any layer (the
library, the server, the command line) can raise these without importing another.
"""

from __future__ import annotations


class PtuningError(Exception):
    """Base class of the errors ptuning raises on purpose.

    >>> import ptuning
    >>> try:
    ...     ptuning.Predictor.from_checkpoint("no/such/folder")
    ... except ptuning.PtuningError as exc:
    ...     print(exc)
    """


class UserError(PtuningError):
    """An error in what the user asked for (flags, names, their combination): one line, exit code 2.

    >>> from ptuning import UserError
    >>> raise UserError("--prefix-len must be >= 1, got 0")
    """


class DataError(UserError, ValueError):
    """Bad user input: the message names the file, the line or record, and what was expected.

    >>> import ptuning
    >>> try:
    ...     ptuning.train(ptuning.TrainConfig.build(train_file="reviews.csv", label_column="stars"))
    ... except ptuning.DataError as exc:
    ...     print(exc)  # reviews.csv: no column 'stars' ...
    """


class BackboneError(UserError, ValueError):
    """A backbone name that cannot be resolved; the message says what to install or pass.

    >>> from ptuning import BackboneError
    >>> from ptuning.core.backbones import load_backbone
    >>> try:
    ...     load_backbone("no-such-model")
    ... except BackboneError as exc:
    ...     print(exc)
    """


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, malformed, or made for another backbone.

    >>> import ptuning
    >>> try:
    ...     ptuning.PromptModel.from_pretrained("outputs/half-written")
    ... except ptuning.CheckpointError as exc:
    ...     print(exc)  # outputs/half-written/prompt.safetensors: ...
    """


class ServingError(PtuningError):
    """Base class of the errors the serving engine reports to its callers.

    >>> from ptuning import ServingError
    >>> from ptuning.serving import MultiTaskPredictor
    >>> try:
    ...     MultiTaskPredictor.from_checkpoints({"sst2": "outputs/sst2"}).remove_task("nope")
    ... except ServingError as exc:
    ...     print(exc)
    """


def error_line(exc: BaseException) -> str:
    """An error's message as one line (its first), or its class name when it has none: what the
    command line prints after ``ptuning <command>: error:`` and the HTTP server answers."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
