"""Which of a protocol's studies and cells run when: `run_protocol`.

A tuned protocol without levers or a convergence check runs its studies and cells in one queue
(`pipeline`); the others keep the older order: every study (in this process), then the lever
cells, then the main cells with the levers that helped. Each cell is trained by `run.run_cell`
and its row appended by `run.record_row`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .cells import (
    LONGER,
    VARIANT,
    Cell,
    cells,
    lever_cells,
    lever_settings,
    longer_settings,
    variant_settings,
)
from .pipeline import run_pipeline
from .protocols import RESULTS, Protocol
from .run import WORK_DIR, clear_work, drop_cut_line, final_settings, read_results, record_row, run_cell
from .tuning_budget import borrowed_settings, tune_protocol


def run_protocol(
    protocol: Protocol,
    folder: Path,
    *,
    tasks: Iterable[str] | None = None,
    bf16: bool | None = False,
    data_dir: str | None = None,
    jobs: int = 1,
    threads: int | None = None,
    log=print,
    tune_only: bool = False,
) -> list[dict[str, Any]]:
    """Train every cell not yet in results.jsonl; `jobs` > 1 runs that many cells at once, each in
    its own process (with `threads` torch threads each), and this process appends their rows.

    A protocol with tuning runs (or resumes) its studies and cells in one queue (`pipeline`): a cell
    starts once its study has finished. With levers or a convergence check (`longer_tasks`), or
    `tune_only`, the studies run first, in this
    process (`tune_only`: only them), then the lever cells, then the main cells. A cell cut short
    resumes from its checkpoints."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    drop_cut_line(folder)
    tuned: dict[tuple[str, str], dict[str, Any]] = {}
    # levers and the convergence check are judged against the first seed's main cells: the older order
    if protocol.tune_trials and not protocol.levers and not protocol.longer_tasks and not tune_only:
        final = final_settings(protocol, [])
        run_pipeline(
            protocol,
            folder,
            tasks=tasks,
            bf16=bf16,
            data_dir=data_dir,
            jobs=jobs,
            threads=threads,
            log=log,
            settings=lambda cell, found: cell_settings(protocol, cell, found, final),
        )
        return read_results(folder)
    if protocol.tune_trials:
        if threads:
            import torch

            torch.set_num_threads(threads)
        tuned = tune_protocol(
            protocol, folder, tasks=tasks, bf16=bf16, data_dir=data_dir, jobs=jobs, threads=threads, log=log
        )
        if tune_only:
            return read_results(folder)
    elif protocol.settings_from:  # another study's settings: refused before any training if not found yet
        tuned = borrowed_settings(protocol, folder)
        log(f"protocol {protocol.name}: settings from {folder.parent / protocol.settings_from}")
    rows = read_results(folder)
    done = {row["key"] for row in rows if row.get("status") == "ok"}
    levers = [c for c in lever_cells(protocol, tasks, tuned) if c.key not in done]
    if levers:  # before the main cells, which take the levers that helped
        log(f"protocol {protocol.name}: {len(levers)} lever cells to run")
        _run_cells(
            levers,
            protocol,
            folder,
            jobs,
            log,
            bf16=bf16,
            data_dir=data_dir,
            threads=threads,
            settings=lambda cell: {
                **tuned.get((cell.task, cell.method), {}),
                **lever_settings(protocol, cell),
            },
        )
        rows = read_results(folder)
        done = {row["key"] for row in rows if row.get("status") == "ok"}
    final = final_settings(protocol, rows)
    todo = [c for c in cells(protocol, tasks, tuned) if c.key not in done]
    log(f"protocol {protocol.name}: {len(todo)} cells to run, {len(done)} already done ({folder / RESULTS})")

    _run_cells(
        todo,
        protocol,
        folder,
        jobs,
        log,
        bf16=bf16,
        data_dir=data_dir,
        threads=threads,
        settings=lambda cell: cell_settings(protocol, cell, tuned, final),
    )
    return read_results(folder)


def cell_settings(
    protocol: Protocol,
    cell: Cell,
    tuned: dict[tuple[str, str], dict[str, Any]],
    final: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """A main, longer or variant cell's TrainConfig fields: its study's best setting, the method's
    final settings, and for a longer cell the longer training, for a variant its changes."""
    main = {**tuned.get((cell.task, cell.method), {}), **final.get(cell.method, {})}
    if cell.kind == "main":
        return main
    if cell.kind == LONGER:
        return {**main, **longer_settings(protocol, cell)}
    if cell.kind.startswith(VARIANT):
        return {**main, **variant_settings(protocol, cell)}
    return {}


def _run_cells(todo, protocol, folder, jobs, log, *, bf16, data_dir, threads, settings) -> None:
    """Train `todo` (one at a time, or `jobs` processes) and append each row as it finishes."""
    work = folder / WORK_DIR
    options = {"bf16": bf16, "data_dir": data_dir, "threads": threads}

    if jobs <= 1:
        for index, cell in enumerate(todo, 1):
            log(f"[{index}/{len(todo)}] {cell.key} ...")
            row = run_cell(cell, protocol, work, **options, settings=settings(cell))
            record_row(folder, cell, row, f"{index}/{len(todo)}", log)
    else:
        from concurrent.futures import as_completed

        from .workers import worker_pool

        with worker_pool(jobs) as pool:
            futures = {
                pool.submit(run_cell, cell, protocol, work, **options, settings=settings(cell)): cell
                for cell in todo
            }
            for index, future in enumerate(as_completed(futures), 1):
                cell = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # the worker process died: record it, go on
                    row = {**asdict(cell), "key": cell.key, "protocol": protocol.name, "status": "error"}
                    row["error"] = f"{type(exc).__name__}: {exc}"
                record_row(folder, cell, row, f"{index}/{len(todo)}", log)
    clear_work(work)
