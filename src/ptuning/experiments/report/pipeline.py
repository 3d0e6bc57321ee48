"""A tuned protocol's studies and the cells they set, in one queue.

A cell waits only for the study of its own (task, method): once that study has finished, the cell
goes ahead of the studies still to run if its method is one of the claim's (p-tuning-v2 against
fine-tune), after them if it is a secondary method's. So the first task's verdict lands while the
later tasks are still being tuned, and a run cut short leaves whole comparisons, not only studies.
A variant cell (a lever against the tuned method, `report/variants.py`) goes after the claim's
studies and before the secondary methods': every task's verdict first, then the levers on it.
The studies run in their usual order (`tuning_budget.unfinished_studies`) and the cells in
`cells.cells`' order; `jobs` items at a time, each in its own process.

Protocols with levers or a convergence check keep the older order (every study, then the lever
cells, then the main cells with the levers that helped, the longer cells after the first seed's):
their cells wait for verdicts and orders that span every study.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .cells import VARIANT, Cell, cells
from .protocols import Protocol
from .run import WORK_DIR, clear_work, read_results, record_row, run_cell
from .tuning_budget import run_study, study_state, unfinished_studies
from .workers import worker_pool

Tuned = dict[tuple[str, str], dict[str, Any]]


def _ready(protocol: Protocol, cell: Cell, finished: set[tuple[str, str]]) -> bool:
    """A cell of a tuned method waits for its study; a method the protocol does not tune does not."""
    return cell.method not in protocol.methods or (cell.task, cell.method) in finished


def next_item(
    protocol: Protocol,
    studies: list[Any],
    todo: list[Cell],
    finished: set[tuple[str, str]],
) -> tuple[str, Any] | None:
    """What to start next: ("cell", Cell) or ("study", TuneConfig), taken out of `todo` / `studies`;
    None when nothing can start now (what is left waits for a running study, or nothing is left)."""
    ready = [cell for cell in todo if _ready(protocol, cell, finished)]
    variants = [cell for cell in ready if cell.kind.startswith(VARIANT)]
    claim = [c for c in ready if c.method not in protocol.secondary_methods and c not in variants]
    if claim:
        todo.remove(claim[0])
        return "cell", claim[0]
    claim_study_left = any(cfg.fixed.get("method") not in protocol.secondary_methods for cfg in studies)
    if variants and not claim_study_left:
        todo.remove(variants[0])
        return "cell", variants[0]
    if studies:
        return "study", studies.pop(0)
    if ready:
        todo.remove(ready[0])
        return "cell", ready[0]
    return None


def run_pipeline(
    protocol: Protocol,
    folder: Path,
    *,
    tasks: Iterable[str] | None,
    bf16: bool | None,
    data_dir: str | None,
    jobs: int,
    threads: int | None,
    log: Callable[[str], None],
    settings: Callable[[Cell, Tuned], dict[str, Any]],
) -> None:
    """Run the protocol's unfinished studies and its cells not yet in results.jsonl, each cell as soon
    as its study has finished; `settings(cell, tuned)` gives a cell its TrainConfig fields."""
    folder = Path(folder)
    studies = unfinished_studies(protocol, folder, tasks=tasks, bf16=bf16, data_dir=data_dir)
    done = {row["key"] for row in read_results(folder) if row.get("status") == "ok"}
    started: set[str] = set()
    work = folder / WORK_DIR
    options = {"bf16": bf16, "data_dir": data_dir, "threads": threads}
    counts = {"cells": 0}

    def state() -> tuple[Tuned, set[tuple[str, str]], list[Cell]]:
        """The settings found so far, the finished studies and the cells still to start (cells take
        their tuned prompt length, so they are listed again whenever a study finishes)."""
        tuned, finished = study_state(protocol, folder)
        todo = [c for c in cells(protocol, tasks, tuned) if c.key not in done and c.key not in started]
        return tuned, finished, todo

    def describe(kind: str, item: Any) -> str:
        return item.key if kind == "cell" else f"study {item.output_dir.name} ({item.trials} trials)"

    def cell_done(cell: Cell, row: dict[str, Any]) -> None:
        counts["cells"] += 1
        record_row(folder, cell, row, counts["cells"], log)
        if row["status"] == "ok":
            done.add(cell.key)

    tuned, finished, todo = state()
    log(
        f"protocol {protocol.name}: {len(studies)} studies to run and {len(todo)} cells, "
        f"{len(done)} cells already done; each cell starts once its study has finished"
    )
    if jobs <= 1:
        while (item := next_item(protocol, studies, todo, finished)) is not None:
            kind, what = item
            log(f"starting {describe(kind, what)}")
            if kind == "study":
                _run_study_logged(what, None, log)
            else:
                started.add(what.key)
                cell_done(what, run_cell(what, protocol, work, **options, settings=settings(what, tuned)))
            tuned, finished, todo = state()
        clear_work(work)
        return

    running: dict[Any, tuple[str, Any]] = {}
    with worker_pool(jobs) as pool:
        while True:
            while len(running) < jobs and (item := next_item(protocol, studies, todo, finished)) is not None:
                kind, what = item
                log(f"starting {describe(kind, what)}")
                if kind == "study":
                    future = pool.submit(run_study, what, threads)
                else:
                    started.add(what.key)
                    future = pool.submit(
                        run_cell, what, protocol, work, **options, settings=settings(what, tuned)
                    )
                running[future] = item
            if not running:
                break
            finished_now, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished_now:
                kind, what = running.pop(future)
                if kind == "study":
                    try:
                        future.result()
                        log(f"tuned {what.output_dir.name}")
                    except Exception as exc:  # recorded by its study.db; the next run resumes it
                        log(f"tuning {what.output_dir.name} failed: {type(exc).__name__}: {exc}")
                    continue
                try:
                    row = future.result()
                except Exception as exc:  # the worker process died: record it, go on
                    row = {**asdict(what), "key": what.key, "protocol": protocol.name, "status": "error"}
                    row["error"] = f"{type(exc).__name__}: {exc}"
                cell_done(what, row)
            tuned, finished, todo = state()
    clear_work(work)


def _run_study_logged(cfg: Any, threads: int | None, log: Callable[[str], None]) -> None:
    try:
        run_study(cfg, threads)
        log(f"tuned {cfg.output_dir.name}")
    except Exception as exc:  # as in a worker: recorded by its study.db, the next run resumes it
        log(f"tuning {cfg.output_dir.name} failed: {type(exc).__name__}: {exc}")
