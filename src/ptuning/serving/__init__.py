"""Serving many tasks from one frozen backbone: the engine (`MultiTaskPredictor`, `MicroBatcher`)
and the HTTP app (`ptuning.serving.app.create_app`, imported on demand: it needs FastAPI)."""

from .engine import (
    InvalidTaskNameError,
    MicroBatcher,
    MultiTaskPredictor,
    PreparedRequest,
    QueueFullError,
    ServedTask,
    ServingError,
    ShuttingDownError,
    TaskExistsError,
    UnknownTaskError,
    check_servable,
)

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
