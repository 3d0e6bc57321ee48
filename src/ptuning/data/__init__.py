"""Task data: built-in tasks and user files (`tasks`)."""

from ptuning.data.spec import DataError, TaskSpec
from ptuning.data.tasks import KNOWN_TASKS, TaskData, get_task_spec, load_task, load_user_task, subsample

__all__ = [
    "KNOWN_TASKS",
    "DataError",
    "TaskData",
    "TaskSpec",
    "get_task_spec",
    "load_task",
    "load_user_task",
    "subsample",
]
