"""The kinds of task, in a module of its own so that the command line's settings
(`ptuning.train_config`) read them without importing the data package (which imports torch).
`ptuning.data.spec` re-exports them with the task spec."""

from __future__ import annotations

from typing import Literal, get_args

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
