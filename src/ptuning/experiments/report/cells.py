"""The cells of a protocol (one training run each: task, method, seed, prompt length), the lever
cells, and the settings a cell trains with."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...methods import get_method
from .aggregate import latest_ok
from .protocols import Protocol, TaskSetting


@dataclass(frozen=True)
class Cell:
    task: str
    method: str
    seed: int
    prefix_len: int
    # "main", "sweep", "longer" (the convergence check), "lever-<name>" or "variant-<name>"
    kind: str = "main"

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.task}/{self.method}/P{self.prefix_len}/seed{self.seed}"


def cells(
    protocol: Protocol,
    tasks: Iterable[str] | None = None,
    tuned: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Cell]:
    """Every cell, ordered so that a partial run is most useful: the first seed of the main methods
    and the prompt-length sweep first, then the secondary methods' first seed, then the other seeds
    (priority tasks first), the secondary methods' later seeds last, the variants of the lever
    method's cells after them all. `tuned` (task, method) -> settings of a tuned protocol gives each
    main cell its tuned prompt length."""
    wanted = set(tasks) if tasks else None
    settings = [t for t in protocol.tasks if wanted is None or t.task in wanted]
    out: list[Cell] = []
    secondary_first: list[Cell] = []
    later: list[Cell] = []
    max_seeds = max((len(t.seeds) for t in settings), default=0)
    for round_ in range(max_seeds):
        ordered = settings
        if round_ > 0:
            ordered = sorted(settings, key=lambda t: t.task not in protocol.priority_tasks)
        for setting in ordered:
            if round_ < len(setting.seeds):
                for method in protocol.methods:
                    length = tuned_length(protocol, setting, method, tuned)
                    cell = Cell(setting.task, method, setting.seeds[round_], length)
                    if method not in protocol.secondary_methods:
                        out.append(cell)
                    else:
                        (later if round_ > 0 else secondary_first).append(cell)
        if round_ == 0:
            out += [
                Cell(setting.task, method, setting.seeds[0], prompt_length(protocol, setting))
                for setting in ordered
                for method in protocol.zero_shot_methods
                if zero_shot_applies(method, setting.task)
            ]
            if wanted is None or protocol.sweep_task in wanted:
                sweep = next(t for t in protocol.tasks if t.task == protocol.sweep_task)
                for length in protocol.sweep_lengths:
                    if length != protocol.prefix_len:
                        out.append(Cell(sweep.task, "p-tuning-v2", sweep.seeds[0], length, "sweep"))
            out += longer_cells(protocol, tasks, tuned)
            out += secondary_first
    return out + later + variant_cells(protocol, tasks, tuned)


LONGER = "longer"


def longer_cells(
    protocol: Protocol,
    tasks: Iterable[str] | None = None,
    tuned: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Cell]:
    """The convergence check: the lever method's main cell (first seed, its tuned prompt length) on
    each of `longer_tasks`, to train with more epochs (`longer_settings`)."""
    wanted = set(tasks) if tasks else None
    out = []
    for task in protocol.longer_tasks:
        if wanted is not None and task not in wanted:
            continue
        setting = setting_of(protocol, task)
        length = tuned_length(protocol, setting, protocol.lever_method, tuned)
        out.append(Cell(task, protocol.lever_method, setting.seeds[0], length, LONGER))
    return out


def longer_epochs(protocol: Protocol, task: str) -> int:
    """A convergence-check cell's epochs: `longer_factor` times the task's."""
    return setting_of(protocol, task).epochs * protocol.longer_factor


def longer_settings(protocol: Protocol, cell: Cell) -> dict[str, Any]:
    """What a convergence-check cell changes against its main cell: its epochs."""
    return {"epochs": longer_epochs(protocol, cell.task)}


VARIANT = "variant-"


def variant_cells(
    protocol: Protocol,
    tasks: Iterable[str] | None = None,
    tuned: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Cell]:
    """Each variant of the main cells of `variant_methods`, on each of `variant_tasks` the protocol
    runs, first seed of every task first (each method's beside the others'): the main cell's seed
    and prompt length, or the variant's where it sets one."""
    wanted = set(tasks) if tasks else None
    settings = [
        setting_of(protocol, task) for task in variant_tasks(protocol) if wanted is None or task in wanted
    ]
    out = []
    for round_ in range(max((len(s.seeds) for s in settings), default=0)):
        for setting in settings:
            if round_ >= len(setting.seeds):
                continue
            for method in variant_methods(protocol):
                for name, changes in protocol.variants.items():
                    length = changes.get("prefix_len") or tuned_length(protocol, setting, method, tuned)
                    out.append(Cell(setting.task, method, setting.seeds[round_], length, VARIANT + name))
    return out


def variant_methods(protocol: Protocol) -> tuple[str, ...]:
    """The methods whose main cells the variants change: the lever method first."""
    return protocol.variant_methods or (protocol.lever_method,)


def variant_tasks(protocol: Protocol) -> list[str]:
    """`variant_tasks` among the protocol's tasks (a protocol derived with fewer keeps the rest)."""
    run = {t.task for t in protocol.tasks}
    return [task for task in protocol.variant_tasks if task in run]


def variant_settings(protocol: Protocol, cell: Cell) -> dict[str, Any]:
    """What a variant cell changes against its main cell."""
    return dict(protocol.variants[cell.kind.removeprefix(VARIANT)])


BASELINE = "baseline"


def lever_cells(
    protocol: Protocol,
    tasks: Iterable[str] | None = None,
    tuned: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Cell]:
    """The lever comparison: the baseline and each lever, on each lever task, seed by seed."""
    wanted = set(tasks) if tasks else None
    out = []
    for seed in protocol.lever_seeds:
        for task in protocol.lever_tasks:
            if wanted is not None and task not in wanted:
                continue
            length = tuned_length(protocol, setting_of(protocol, task), protocol.lever_method, tuned)
            for name in (BASELINE, *protocol.levers):
                out.append(Cell(task, protocol.lever_method, seed, length, f"lever-{name}"))
    return out


def lever_settings(protocol: Protocol, cell: Cell) -> dict[str, Any]:
    """A lever cell trains at its task's tuning size, with the lever's settings."""
    name = cell.kind.removeprefix("lever-")
    return {
        **tuning_size(setting_of(protocol, cell.task)),
        **({} if name == BASELINE else protocol.levers[name]),
    }


def kept_levers(protocol: Protocol, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """lever name -> {"gain": mean lever score - mean baseline score (x100), "n": pairs, "kept": bool},
    over the (task, seed) pairs where both finished. Kept only where the gain is positive and every
    pair of the comparison finished."""
    ok = latest_ok(rows)
    scores: dict[tuple[str, str, int], float] = {
        (r["kind"].removeprefix("lever-"), r["task"], r["seed"]): 100 * r["score"]
        for r in ok.values()
        if r["kind"].startswith("lever-")
    }
    expected = len(protocol.lever_tasks) * len(protocol.lever_seeds)
    out = {}
    for name in protocol.levers:
        pairs = [
            (score, scores[(BASELINE, task, seed)])
            for (lever, task, seed), score in scores.items()
            if lever == name and (BASELINE, task, seed) in scores
        ]
        gain = statistics.fmean(a - b for a, b in pairs) if pairs else math.nan
        out[name] = {"gain": gain, "n": len(pairs), "kept": len(pairs) == expected and gain > 0}
    return out


# Settings whose library default moved after the protocols' first runs: their runs keep the value
# they began with, so a study or report resumed under a newer version trains as its first runs did
# (a lever or a tuned setting still overrides them).
PROTOCOL_PINS: dict[str, Any] = {"prompt_dropout_per_example": False, "pair_encoding": "joint"}


def prompt_length(protocol: Protocol, setting: TaskSetting) -> int:
    """The task's own prompt length where it sets one, else the protocol's."""
    return setting.prefix_len or protocol.prefix_len


def tuned_length(
    protocol: Protocol,
    setting: TaskSetting,
    method: str,
    tuned: Mapping[tuple[str, str], dict[str, Any]] | None,
) -> int:
    """The prompt length the method's study picked for the task, else `prompt_length`."""
    return (tuned or {}).get((setting.task, method), {}).get("prefix_len") or prompt_length(protocol, setting)


def tuning_size(setting: TaskSetting) -> dict[str, Any]:
    """What a run at the task's tuning size changes (a tuning trial, a lever cell): the training
    subset, the evaluation subset and the epochs."""
    return {
        "max_train_samples": setting.tune_train_samples,
        "max_eval_samples": setting.tune_eval_samples,
        "epochs": setting.tune_epochs or setting.epochs,
    }


def epoch_settings(protocol: Protocol, epochs: float) -> dict[str, Any]:
    """How long a run trains: `epochs`, or with `epochs_auto` early stopping capped at them."""
    if protocol.epochs_auto:
        return {"epochs": "auto", "max_epochs": max(1, math.ceil(epochs)), "patience": protocol.patience}
    return {"epochs": epochs}


def shared_settings(
    protocol: Protocol, setting: TaskSetting, method: str, *, bf16: bool | None, data_dir: str | None
) -> dict[str, Any]:
    """The TrainConfig settings every run of `method` on the task shares, a main cell or a tuning
    trial (JSON-able: a study records them): the whole training set, the protocol's epochs."""
    return {
        "task": setting.task,
        "backbone": protocol.backbone,
        "method": method,
        "prefix_len": prompt_length(protocol, setting),
        "epochs": setting.epochs,
        "batch_size": setting.batch_size,
        "eval_batch_size": 64,
        "max_seq_length": setting.max_seq_length,
        "max_train_samples": setting.max_train_samples,
        "max_eval_samples": setting.max_eval_samples,
        "pooling": setting.pooling,
        "data_dir": data_dir,
        "bf16": bf16,
        "logging_steps": 10,
        # only where set: the fixed settings a finished study recorded stay the same
        **(epoch_settings(protocol, setting.epochs) if protocol.epochs_auto else {}),
        **({"validation_split": protocol.validation_split} if protocol.validation_split else {}),
    }


def zero_shot_applies(method: str, task: str) -> bool:
    """A zero-shot method (a handcrafted prompt) needs the task's default template and verbalizer,
    which classification tasks have."""
    from ...handcrafted.templates import DEFAULT_PROMPTS

    return not get_method(method).zero_shot or task in DEFAULT_PROMPTS


def setting_of(protocol: Protocol, task: str) -> TaskSetting:
    return next(t for t in protocol.tasks if t.task == task)
