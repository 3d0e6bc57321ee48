"""Equal tuning budgets for a report protocol: one `ptuning tune` study per (task, method).

A protocol with `tune_trials` > 0 first searches each method's hyperparameters on each task with
the same number of trials, on a training subset and with the task's tuning epochs
(`TaskSetting.tune_*`), then trains the best setting of each study on the whole training set (the
protocol's main cells). No method wins by being tuned better: every one gets the same number of
trials of the same size; only the searched parameters differ (fine-tuning has no prompt to size).

Studies live in `<report folder>/tuning/<task>-<method>/` (study.db, trials.csv, best_config.json,
search.json, plots): a killed run resumes its study, and a finished study is not run again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...training.config import OPTION_FIELDS
from ...tuning.space import PARAMETERS, Choice, Range, Space
from .cells import shared_settings, tuning_size

if TYPE_CHECKING:
    from ...training.config import TrainConfig
    from .protocols import Protocol, TaskSetting

TUNING_DIR = "tuning"
# the searched parameters whose best value the final cells take (as TrainConfig fields)
FINAL_PARAMETERS = ("lr", "prefix_len", "prompt_dropout", "prefix_projection")
TUNE_SEED = 0  # trials train with this seed; the sampler is seeded with it too


def study_dir(folder: Path, task: str, method: str) -> Path:
    return Path(folder) / TUNING_DIR / f"{task}-{method}"


def space_of(protocol: Protocol, setting: TaskSetting, method: str) -> Space:
    """The method's learning-rate range, and for a prompt method the task's prompt lengths."""
    low, high = protocol.tune_lr_ranges[method]
    space: Space = {"lr": Range(low, high, log=True)}
    if method != "fine-tune" and setting.tune_prefix_lens:
        space["prefix_len"] = Choice(tuple(setting.tune_prefix_lens))
    return space


def fixed_settings(
    protocol: Protocol, setting: TaskSetting, method: str, *, bf16: bool | None, data_dir: str | None
) -> dict[str, Any]:
    """The TrainConfig settings every trial of this study shares: a main cell's, at the task's
    tuning size, with the tuning seed."""
    shared = shared_settings(protocol, setting, method, bf16=bf16, data_dir=data_dir)
    return {**shared, **tuning_size(setting), "seed": TUNE_SEED}


def _trial_config(settings: argparse.Namespace) -> TrainConfig:
    from ...training.config import TrainConfig

    return TrainConfig.build(**vars(settings), progress=False)


def tune_protocol(
    protocol: Protocol,
    folder: Path,
    *,
    tasks: Iterable[str] | None = None,
    bf16: bool | None = None,
    data_dir: str | None = None,
    log=print,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Run (or resume) every study of the protocol that has not finished; returns `tuned_settings`."""
    from ...tuning.search import TuneConfig, run_search, write_results

    wanted = set(tasks) if tasks else None
    for setting in protocol.tasks:
        if wanted is not None and setting.task not in wanted:
            continue
        for method in protocol.methods:
            out = study_dir(folder, setting.task, method)
            cfg = TuneConfig(
                fixed=fixed_settings(protocol, setting, method, bf16=bf16, data_dir=data_dir),
                space=space_of(protocol, setting, method),
                output_dir=out,
                trials=protocol.tune_trials,
                resume=True,
                seed=TUNE_SEED,
                sampler="qmc",
            )
            summary = out / "search.json"
            if summary.is_file() and json.loads(summary.read_text()).get("finished", 0) >= cfg.trials:
                continue  # finished: its fixed settings are not compared again (final_settings may change)
            log(f"tuning {setting.task} {method}: {cfg.trials} trials in {out}")
            study = run_search(cfg, _trial_config)
            write_results(study, cfg)
    return tuned_settings(protocol, folder)


def _summaries(protocol: Protocol, folder: Path) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    """((task, method), its study's search.json) for every study that wrote one."""
    for setting in protocol.tasks:
        for method in protocol.methods:
            path = study_dir(folder, setting.task, method) / "search.json"
            if path.is_file():
                yield (setting.task, method), json.loads(path.read_text())


def tuned_settings(protocol: Protocol, folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(task, method) -> the TrainConfig fields its study's best trial set (empty where none ran)."""
    if not protocol.tune_trials:
        return {}
    return {
        key: {
            OPTION_FIELDS.get(name, name): value
            for name, value in (summary.get("best_params") or {}).items()
            if name in FINAL_PARAMETERS
        }
        for key, summary in _summaries(protocol, folder)
    }


def best_values(protocol: Protocol, folder: Path) -> dict[tuple[str, str], float]:
    """(task, method) -> its study's best dev value, x100."""
    return {
        key: 100 * summary["best_value"]
        for key, summary in _summaries(protocol, folder)
        if summary.get("best_value") is not None
    }


def describe(protocol: Protocol) -> str:
    """One paragraph for the report: the budget and the spaces."""
    spaces = "; ".join(
        f"{method}: lr {low:g}..{high:g} (log)" for method, (low, high) in protocol.tune_lr_ranges.items()
    )
    return (
        f"Every method gets the same tuning budget: {protocol.tune_trials} `ptuning tune` trials "
        f"(Optuna's quasi-Monte Carlo sampler, a scrambled Sobol sequence with seed {TUNE_SEED} that spreads few trials evenly over the space; median pruning) per task on a training subset, evaluated on "
        f"the dev set; the best trial's learning rate (and, for a prompt method, prompt length) then "
        f"trains on the whole training set. Spaces: {spaces}; prompt lengths per task as listed."
    )


assert set(FINAL_PARAMETERS) <= set(PARAMETERS)
