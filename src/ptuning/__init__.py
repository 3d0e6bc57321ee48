"""ptuning: deep prompt tuning (P-Tuning v2) of frozen pretrained transformer encoders.

The names below are loaded on first use (PEP 562 module `__getattr__`), so importing a light
module such as `ptuning.cli` or `ptuning.errors` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY: dict[str, str] = {
    "METHODS": "ptuning.config",
    "PromptConfig": "ptuning.config",
    "DataError": "ptuning.errors",
    "PtuningError": "ptuning.errors",
    "TaskSpec": "ptuning.data.spec",
    "ParameterCount": "ptuning.modeling",
    "PromptModel": "ptuning.modeling",
    "Predictor": "ptuning.inference",
    "TrainConfig": "ptuning.train_config",
    "train": "ptuning.training",
}

__all__ = [
    "METHODS",
    "DataError",
    "ParameterCount",
    "Predictor",
    "PromptConfig",
    "PromptModel",
    "PtuningError",
    "TaskSpec",
    "TrainConfig",
    "__version__",
    "train",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; nothing is imported at run time
    from .config import METHODS, PromptConfig
    from .data.spec import TaskSpec
    from .errors import DataError, PtuningError
    from .inference import Predictor
    from .modeling import ParameterCount, PromptModel
    from .train_config import TrainConfig
    from .training import train


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ptuning' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
