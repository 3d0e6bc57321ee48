"""The reproduction report: a documented protocol, run cell by cell, rendered to markdown and plots.

A *cell* is one training run (task, method, seed, prompt length). `run_protocol` trains every cell
of a protocol that is not yet in ``results.jsonl`` and appends one JSON line per finished cell, so a
crash loses at most the cell in flight and a rerun skips what is done. `render` reads the results
file (complete or partial) and writes ``report.md``, ``results.json`` (raw cells and aggregates) and
the PNG plots. Nothing in the report is typed in by hand except the paper's figures, which are
labelled as such.

Protocols (see `PROTOCOLS`):

* ``cpu`` (default): MiniLM (6 layers, 384 hidden, 22M parameters) with subsets, short sequences
  and a few epochs, sized to finish in under an hour on 2 CPU cores when they are not shared.
* ``full``: a GPU protocol, whole training sets, more epochs and seeds.
* ``gpu``: whole training sets on one GPU in bf16, sized for about 7 minutes of an H100 with
  `--jobs 4` (`scripts/gpu_report.sh` packs the data and weights and runs it there).

* ``study`` (reports/study-minilm): MiniLM, settings and epochs chosen on a 10% split of each
  training set, equal Optuna budgets (successive halving over epochs), the dev set scored once;
  ``study-mpnet`` (reports/study-mpnet) trains MPNet-base with the settings that study found.
  `study` renders their extra sections (settings found, importances, verdicts, the scale plot).

`dry_run(protocol)` shrinks any protocol to tiny slices (32 examples, one epoch, one seed), to check
a protocol end to end on the CPU before spending GPU time on it.

Modules, by job: `protocols` (the protocols, the dry run, the paper's figures), `cells` (cells,
lever cells, their settings), `run` (run_cell, the results file), `schedule` (run_protocol: which
study or cell runs when), `pipeline` (a tuned protocol's queue), `aggregate`, `render` (markdown),
`plots` (PNGs), `gaps` (the paper's claim as targets).
"""

from .aggregate import aggregate, latest_ok
from .cells import BASELINE, Cell, cells, kept_levers, lever_cells, lever_settings, prompt_length, setting_of
from .protocols import (
    DRY_RUN,
    MAIN_METHODS,
    PAPER_FIGURES,
    PROTOCOLS,
    RESULTS,
    Protocol,
    TaskSetting,
    dry_run,
)
from .render import render
from .run import ResultsError, final_settings, read_results, run_cell
from .schedule import run_protocol

__all__ = [
    "BASELINE",
    "DRY_RUN",
    "MAIN_METHODS",
    "PAPER_FIGURES",
    "PROTOCOLS",
    "RESULTS",
    "ResultsError",
    "Cell",
    "Protocol",
    "TaskSetting",
    "aggregate",
    "cells",
    "dry_run",
    "final_settings",
    "kept_levers",
    "latest_ok",
    "lever_cells",
    "lever_settings",
    "prompt_length",
    "read_results",
    "render",
    "run_cell",
    "run_protocol",
    "setting_of",
]
