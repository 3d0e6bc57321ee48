"""The serving engine's names, from their homes since the split by job: `serving.predictor`
(`MultiTaskPredictor`), `serving.batcher` (`MicroBatcher`), `serving.tasks` (`ServedTask`,
`PreparedRequest`, `check_servable`) and `serving.errors` (the errors)."""

from .batcher import MicroBatcher
from .errors import (
    InvalidTaskNameError,
    QueueFullError,
    ServingError,
    ShuttingDownError,
    TaskExistsError,
    UnknownTaskError,
)
from .predictor import MultiTaskPredictor
from .tasks import DEFAULT_MAX_LENGTH, TASK_NAME, PreparedRequest, ServedTask, check_servable

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "TASK_NAME",
    "InvalidTaskNameError",
    "MicroBatcher",
    "MultiTaskPredictor",
    "PreparedRequest",
    "QueueFullError",
    "ServedTask",
    "ServingError",
    "ShuttingDownError",
    "TaskExistsError",
    "UnknownTaskError",
    "check_servable",
]
