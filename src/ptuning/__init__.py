"""ptuning: deep prompt tuning (P-Tuning v2) of frozen pretrained transformer encoders."""

__version__ = "0.1.0"

from .config import METHODS, PromptConfig  # noqa: E402
from .data.spec import DataError, TaskSpec  # noqa: E402
from .modeling import ParameterCount, PromptModel  # noqa: E402

__all__ = ["METHODS", "DataError", "ParameterCount", "PromptConfig", "PromptModel", "TaskSpec", "__version__"]
