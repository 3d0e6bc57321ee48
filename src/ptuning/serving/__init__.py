"""Serving many tasks from one frozen backbone: the engine (`MultiTaskPredictor` in `predictor`,
`MicroBatcher` in `batcher`, the served tasks in `tasks`, the errors in `errors`) and the HTTP app
(`ptuning.serving.app.create_app`, imported on demand: it needs FastAPI)."""

from ..errors import ServingError
from .batcher import MicroBatcher
from .errors import InvalidTaskNameError, QueueFullError, ShuttingDownError, TaskExistsError, UnknownTaskError
from .predictor import MultiTaskPredictor
from .tasks import PreparedRequest, ServedTask, check_servable

__all__ = [
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
