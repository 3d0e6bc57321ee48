"""What a task is: its type, its labels and its metric. Shared by data loading, heads and metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

TaskType = Literal[
    "classification",  # single sentence or sentence pair -> one of `labels`
    "regression",  # sentence pair -> a float (STS-B)
    "multiple_choice",  # context + N choices -> index of the right choice (COPA)
    "token_classification",  # words -> one tag per word (NER, IOB2)
    "question_answering",  # question + context -> answer span (SQuAD)
]

TASK_TYPES: tuple[str, ...] = get_args(TaskType)
# the task types of users' own data files: every one but multiple choice, which no file format reads
FILE_TASK_TYPES: tuple[str, ...] = tuple(t for t in TASK_TYPES if t != "multiple_choice")
# the share of a task's training data held out to select checkpoints on when it has no validation data
DEFAULT_VALIDATION_SPLIT = 0.1


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task.

    `labels` holds the label names for classification and token classification (in id order),
    is empty for regression and question answering, and holds the choice indices ("0", "1", ...)
    for multiple choice.

        >>> from ptuning import TaskSpec
        >>> TaskSpec("sentiment", "classification", labels=("negative", "positive")).num_labels
        2
    """

    name: str
    task_type: str
    labels: tuple[str, ...] = ()
    metric: str = "accuracy"  # the primary metric, used to pick the best checkpoint
    num_choices: int = 0  # multiple choice only
    null_answers: bool = False  # question answering: a question may have no answer (SQuAD 2.0)
    null_threshold: float = 0.0  # with null_answers: answer nothing when null - best span score exceeds it
    notes: tuple[str, ...] = field(default=(), compare=False)  # printed to users (e.g. how a split was made)

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"unknown task type {self.task_type!r}; known: {', '.join(TASK_TYPES)}")

    @property
    def num_labels(self) -> int:
        if self.task_type == "regression":
            return 1
        if self.task_type == "question_answering":
            return 2
        if self.task_type == "multiple_choice":
            return 1
        return len(self.labels)


def gives_pairs(examples: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a task's examples are text pairs: any of the first hundred has a second text."""
    return any(example.get("text_pair") for example in examples[:100])
