"""ptuning: deep prompt tuning (P-Tuning v2) of frozen pretrained transformer encoders.

    >>> import ptuning
    >>> result = ptuning.train(ptuning.TrainConfig.build(task="sst2", output_dir="outputs/sst2"))
    >>> ptuning.evaluate("outputs/sst2")["accuracy"]
    >>> ptuning.Predictor.from_checkpoint("outputs/sst2").predict(["a gripping film"])

The names below are loaded on first use (PEP 562 module `__getattr__`), so importing a light
module such as `ptuning.cli` or `ptuning.errors` does not import torch. Modules inside the package
import from the modules that define a name, never from this facade.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> (the module that defines it, its name there)
_LAZY: dict[str, tuple[str, str]] = {
    "METHODS": ("ptuning.core.config", "METHODS"),
    "PromptConfig": ("ptuning.core.config", "PromptConfig"),
    "BackboneError": ("ptuning.errors", "BackboneError"),
    "CheckpointError": ("ptuning.errors", "CheckpointError"),
    "DataError": ("ptuning.errors", "DataError"),
    "PtuningError": ("ptuning.errors", "PtuningError"),
    "ServingError": ("ptuning.errors", "ServingError"),
    "UserError": ("ptuning.errors", "UserError"),
    "TaskSpec": ("ptuning.tasks", "TaskSpec"),
    "ParameterCount": ("ptuning.model", "ParameterCount"),
    "PromptModel": ("ptuning.model", "PromptModel"),
    "Predictor": ("ptuning.inference", "Predictor"),
    "TrainConfig": ("ptuning.training.config", "TrainConfig"),
    "train": ("ptuning.training.run", "train"),
    "evaluate": ("ptuning.training.evaluation", "evaluate_checkpoint"),
    "evaluate_checkpoint": ("ptuning.training.evaluation", "evaluate_checkpoint"),
}

__all__ = [
    "METHODS",
    "BackboneError",
    "CheckpointError",
    "DataError",
    "ParameterCount",
    "Predictor",
    "PromptConfig",
    "PromptModel",
    "PtuningError",
    "ServingError",
    "TaskSpec",
    "TrainConfig",
    "UserError",
    "__version__",
    "evaluate",
    "evaluate_checkpoint",
    "train",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; nothing is imported at run time
    from .core.config import METHODS, PromptConfig
    from .errors import BackboneError, CheckpointError, DataError, PtuningError, ServingError, UserError
    from .inference import Predictor
    from .model import ParameterCount, PromptModel
    from .tasks import TaskSpec
    from .training.config import TrainConfig
    from .training.evaluation import evaluate_checkpoint
    from .training.evaluation import evaluate_checkpoint as evaluate
    from .training.run import train


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ptuning' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
