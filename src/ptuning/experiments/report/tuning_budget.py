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
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import DataError
from ...methods import get_method
from ...training.config import OPTION_FIELDS
from ...tuning.space import PARAMETERS, Choice, Range, Space
from .cells import PROTOCOL_PINS, epoch_settings, shared_settings, tuning_size

if TYPE_CHECKING:
    from ...training.config import TrainConfig
    from .protocols import Protocol, TaskSetting

TUNING_DIR = "tuning"
# the searched parameters whose best value the final cells take (as TrainConfig fields)
FINAL_PARAMETERS = ("lr", "mlp_lr", "prefix_len", "prompt_dropout", "prefix_projection", "backbone_dropout")
TUNE_SEED = 0  # trials train with this seed; the sampler is seeded with it too


def study_dir(folder: Path, task: str, method: str) -> Path:
    return Path(folder) / TUNING_DIR / f"{task}-{method}"


def space_of(protocol: Protocol, setting: TaskSetting, method: str) -> Space:
    """The method's space in `tune_spaces`, else its learning-rate range and, for a prompt method,
    the task's prompt lengths."""
    if method in protocol.tune_spaces:
        return dict(protocol.tune_spaces[method])
    low, high = protocol.tune_lr_ranges[method]
    space: Space = {"lr": Range(low, high, log=True)}
    if get_method(method).has_prompt and setting.tune_prefix_lens:
        space["prefix_len"] = Choice(tuple(setting.tune_prefix_lens))
    return space


def fixed_settings(
    protocol: Protocol, setting: TaskSetting, method: str, *, bf16: bool | None, data_dir: str | None
) -> dict[str, Any]:
    """The TrainConfig settings every trial of this study shares: a main cell's, at the task's
    tuning size, with the tuning seed."""
    shared = shared_settings(protocol, setting, method, bf16=bf16, data_dir=data_dir)
    out = {**shared, **tuning_size(setting), "seed": TUNE_SEED}
    if protocol.epochs_auto:  # the trials' cap: early stopping and the pruner end them sooner
        out.update(epoch_settings(protocol, out["epochs"]))
    return out


def _trial_config(settings: argparse.Namespace) -> TrainConfig:
    from ...training.config import TrainConfig

    return TrainConfig.build(**{**PROTOCOL_PINS, **vars(settings)}, progress=False)


def study_config(
    protocol: Protocol,
    setting: TaskSetting,
    method: str,
    folder: Path,
    *,
    bf16: bool | None,
    data_dir: str | None,
):
    """The `ptuning tune` search of one (task, method) study."""
    from ...tuning.search import TuneConfig

    return TuneConfig(
        fixed=fixed_settings(protocol, setting, method, bf16=bf16, data_dir=data_dir),
        space=space_of(protocol, setting, method),
        output_dir=study_dir(folder, setting.task, method),
        trials=protocol.tune_trials,
        resume=True,
        seed=TUNE_SEED,
        sampler=protocol.tune_sampler,
        pruner=protocol.tune_pruner,
        max_resource=max(1, math.ceil(setting.tune_epochs or setting.epochs)),
        # epochs as the pruner's resource, where trials evaluate once an epoch (not the median pruner
        # of the older protocols, whose studies recorded steps)
        by_epoch=protocol.tune_pruner != "median",
    )


def run_study(cfg, threads: int | None = None) -> None:
    """Run (or resume) one study and write its results (also in a worker process of `tune_protocol`)."""
    from ...tuning.results import write_results
    from ...tuning.search import run_search

    if threads:
        import torch

        torch.set_num_threads(threads)
    write_results(run_search(cfg, _trial_config), cfg)


def unfinished_studies(
    protocol: Protocol,
    folder: Path,
    *,
    tasks: Iterable[str] | None = None,
    bf16: bool | None = None,
    data_dir: str | None = None,
) -> list[Any]:
    """The `ptuning tune` configs of the protocol's studies that have not finished, task by task, the
    claim's (p-tuning-v2 against fine-tune) before the secondary methods'."""
    wanted = set(tasks) if tasks else None
    finished = finished_studies(protocol, folder)
    todo = []
    for setting in protocol.tasks:
        if wanted is not None and setting.task not in wanted:
            continue
        for method in protocol.methods:
            if (setting.task, method) in finished:
                continue  # finished: its fixed settings are not compared again (final_settings may change)
            cfg = study_config(protocol, setting, method, folder, bf16=bf16, data_dir=data_dir)
            todo.append((method in protocol.secondary_methods, cfg))
    return [cfg for _, cfg in sorted(todo, key=lambda item: item[0])]


def finished_studies(protocol: Protocol, folder: Path) -> set[tuple[str, str]]:
    """(task, method) of every study whose search.json counts all the protocol's trials finished."""
    return study_state(protocol, folder)[1]


def study_state(
    protocol: Protocol, folder: Path
) -> tuple[dict[tuple[str, str], dict[str, Any]], set[tuple[str, str]]]:
    """`tuned_settings` and `finished_studies` from one reading of the search.json files: read apart,
    a study finishing in another process between the two readings would count as finished with no
    settings found."""
    summaries = list(_summaries(protocol, folder))
    finished = {key for key, summary in summaries if summary.get("finished", 0) >= protocol.tune_trials}
    return _tuned_from(summaries), finished


def tune_protocol(
    protocol: Protocol,
    folder: Path,
    *,
    tasks: Iterable[str] | None = None,
    bf16: bool | None = None,
    data_dir: str | None = None,
    jobs: int = 1,
    threads: int | None = None,
    log=print,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Run (or resume) every study of the protocol that has not finished, `jobs` at a time (each in
    its own process with `threads` torch threads where jobs > 1); returns `tuned_settings`."""
    todo = unfinished_studies(protocol, folder, tasks=tasks, bf16=bf16, data_dir=data_dir)
    if jobs <= 1:
        for cfg in todo:
            log(f"tuning {cfg.output_dir.name}: {cfg.trials} trials in {cfg.output_dir}")
            run_study(cfg)
    elif todo:
        from concurrent.futures import as_completed

        from .workers import worker_pool

        with worker_pool(jobs) as pool:
            futures = {pool.submit(run_study, cfg, threads): cfg for cfg in todo}
            log(f"tuning {len(todo)} studies, {jobs} at a time: {', '.join(c.output_dir.name for c in todo)}")
            for future in as_completed(futures):
                cfg = futures[future]
                try:
                    future.result()
                    log(f"tuned {cfg.output_dir.name}")
                except Exception as exc:  # recorded by its study.db; the next run resumes it
                    log(f"tuning {cfg.output_dir.name} failed: {type(exc).__name__}: {exc}")
    return tuned_settings(protocol, folder)


def _summaries(
    protocol: Protocol, folder: Path, *, source: bool = False
) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    """((task, method), its study's search.json) for every study that wrote one; `source`: in the
    folder a protocol with `settings_from` takes its settings from."""
    if source:
        folder = Path(folder).parent / protocol.settings_from
    for setting in protocol.tasks:
        for method in protocol.methods:
            path = study_dir(folder, setting.task, method) / "search.json"
            if path.is_file():
                yield (setting.task, method), json.loads(path.read_text())


class StudySettingsError(DataError):
    """A protocol that takes another study's settings before that study has found them."""


def tuned_settings(protocol: Protocol, folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(task, method) -> the TrainConfig fields its study's best trial set (empty where none ran).
    A protocol with `settings_from` reads them from that folder's studies."""
    if not protocol.tune_trials and not protocol.settings_from:
        return {}
    return _tuned_from(_summaries(protocol, folder, source=bool(protocol.settings_from)))


def config_field(name: str) -> str:
    """The TrainConfig field a searched parameter sets ("lr" and "mlp_lr": learning_rate); any other
    name is taken as a field already."""
    option = PARAMETERS[name][0] if name in PARAMETERS else name
    return OPTION_FIELDS.get(option, option)


def _tuned_from(
    summaries: Iterable[tuple[tuple[str, str], dict[str, Any]]],
) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        key: {
            config_field(name): value
            for name, value in (summary.get("best_params") or {}).items()
            if name in FINAL_PARAMETERS
        }
        for key, summary in summaries
        if summary.get("best_params")
    }


def borrowed_settings(protocol: Protocol, folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """`tuned_settings` of a protocol with `settings_from`, every (task, method) of it found; a
    StudySettingsError naming the first study that has no best trial yet."""
    from .protocols import PROTOCOLS

    found = tuned_settings(protocol, folder)
    source = Path(folder).parent / protocol.settings_from
    dry = protocol.settings_from.endswith("-dry-run")
    writers = [
        p.name for p in PROTOCOLS.values() if p.folder_name == protocol.settings_from.removesuffix("-dry-run")
    ]
    hint = (
        f"ptuning report --protocol {writers[0]}{' --dry-run' if dry else ''}" if writers else "its protocol"
    )
    for setting in protocol.tasks:
        for method in protocol.methods:
            if (setting.task, method) not in found:
                where = study_dir(source, setting.task, method) / "search.json"
                raise StudySettingsError(
                    f"{where}: no best trial yet; protocol {protocol.name} trains with the settings that "
                    f"study finds: run it first ({hint})"
                )
    return found


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
