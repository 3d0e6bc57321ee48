"""The worker processes of `ptuning report --jobs N`: a fresh process per study or cell (each holds a
whole model), which ends when the report's process does.

Killing the report's process (`kill PID`, a session's end) would otherwise leave its workers
training on: they keep the cores, and the output-folder lock of the cell they hold, so the next
`ptuning report` finds that cell "in use by another ptuning process". A worker notices its parent
is gone within `WATCH_S` and exits; the cell or trial resumes from its last saved epoch on the next
run.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

WATCH_S = 2.0


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """`jobs` worker processes (spawned: no state of the parent's torch), a fresh one per item,
    each of which exits when this process does."""
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        max_tasks_per_child=1,
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    )


def exit_with_parent(parent: int) -> None:
    """In a worker: exit once `parent` is no longer this process's parent (it died; the worker was
    handed to init). A daemon thread, so the work itself needs no check."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_S)
        os._exit(1)  # no cleanup to run: the cell's state is in its saved checkpoints

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
