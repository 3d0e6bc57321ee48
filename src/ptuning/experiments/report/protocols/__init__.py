"""The report's protocols by name (`PROTOCOLS`): the benchmark protocols and the studies, what a
protocol is, its dry run, and the paper's figures."""

from __future__ import annotations

from .benchmarks import BENCHMARKS, CPU_LRS
from .paper import PAPER_FIGURES, PAPER_NOTE
from .protocol import (
    DRY_RUN,
    LEARNT_ABOVE,
    MAIN_METHODS,
    METRIC_TITLES,
    RESULTS,
    SENTENCE_TASKS,
    TASK_TITLES,
    Protocol,
    TaskSetting,
    dry_run,
)
from .studies import STUDIES, STUDY_SEEDS, STUDY_SELECTION, STUDY_SPACES, STUDY_SPLIT, STUDY_TRIALS

PROTOCOLS: dict[str, Protocol] = {**BENCHMARKS, **STUDIES}

__all__ = [
    "CPU_LRS",
    "DRY_RUN",
    "LEARNT_ABOVE",
    "MAIN_METHODS",
    "METRIC_TITLES",
    "PAPER_FIGURES",
    "PAPER_NOTE",
    "PROTOCOLS",
    "RESULTS",
    "SENTENCE_TASKS",
    "STUDY_SEEDS",
    "STUDY_SELECTION",
    "STUDY_SPACES",
    "STUDY_SPLIT",
    "STUDY_TRIALS",
    "TASK_TITLES",
    "Protocol",
    "TaskSetting",
    "dry_run",
]
