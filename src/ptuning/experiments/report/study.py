"""The study protocols' own report sections: the settings each study found, Optuna's parameter
importances, the per-task verdict against the 1-point target, and the scale plot (P-Tuning v2 minus
fine-tuning against the backbone's size, from every study folder present)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .gaps import WITHIN_FT
from .protocols import PROTOCOLS, TASK_TITLES, Protocol

# the protocols the scale plot reads -> their backbone's parameters (millions): MiniLM, MPNet-base
STUDY_MILLIONS = {"study": 22.7, "study-mpnet": 110.0}
STUDIES = tuple(STUDY_MILLIONS)
SCALE_PNG = "scale.png"
DRY = "-dry-run"

# how a searched value reads in the report
_SHOWN = {
    "learning_rate": lambda v: f"lr {v:.3g}",
    "prefix_len": lambda v: f"P {v}",
    "prefix_projection": lambda v: "reparameterized" if v else "no MLP",
    "prompt_dropout": lambda v: f"prompt dropout {v:.2f}",
    "backbone_dropout": lambda v: "backbone dropout " + ("on" if v else "off"),
}


def describe_settings(values: Mapping[str, Any]) -> str:
    """A study's best setting as one short phrase (`lr 0.0123, P 32, no MLP, ...`)."""
    from .tuning_budget import config_field  # a trial's parameters go by search name ("mlp_lr")

    named = {config_field(name): value for name, value in values.items()}
    return ", ".join(_SHOWN[name](value) for name, value in named.items() if name in _SHOWN) or "—"


def describe_search(protocol: Protocol) -> str:
    """The tuning paragraph of a protocol with `tune_spaces`: the budget, the sampler, the pruner, the
    spaces and what the trials are scored on."""
    from ...tuning.space import describe_space
    from .tuning_budget import TUNE_SEED

    spaces = "; ".join(
        f"{method}: {describe_space(space, sep=' ')}" for method, space in protocol.tune_spaces.items()
    )
    scored = (
        f"the held-out {protocol.validation_split:.0%} split of the training set"
        if protocol.validation_split
        else "the dev set"
    )
    return (
        f"Every method gets the same tuning budget: {protocol.tune_trials} `ptuning tune` trials per task "
        f"(Optuna's quasi-Monte Carlo sampler, seed {TUNE_SEED}; {protocol.tune_pruner} pruning over "
        f"epochs), scored on {scored}; each trial trains at most the task's trial epochs (early stopping, "
        f"patience {protocol.patience}). Spaces: {spaces}. The best trial's setting then trains the final "
        "cells. Trial scores below are the split's, not the dev set's."
    )


def settings_lines(
    protocol: Protocol,
    tuned: Mapping[tuple[str, str], dict[str, Any]],
    scores: Mapping[tuple[str, str], float],
    *,
    source: str = "",
    folder: Path | None = None,
) -> list[str]:
    """Per task and method: the setting its study found (and the trial's split score); a study
    still running (in `folder`) says how far it got."""
    lines = [
        "## Settings found" + (f" (from {source})" if source else ""),
        "",
        "| task | trial train / eval / max epochs | " + " | ".join(protocol.methods) + " |",
        "|---|---|" + "---|" * len(protocol.methods),
    ]
    for t in protocol.tasks:
        found = []
        for method in protocol.methods:
            values = tuned.get((t.task, method))
            if not values:
                found.append(study_progress(folder, t.task, method) if folder else "not tuned yet")
                continue
            text = describe_settings(values)
            if (t.task, method) in scores:
                text += f" (split {scores[(t.task, method)]:.1f})"
            found.append(text)
        size = f"{t.tune_train_samples or 'all'} / {t.tune_eval_samples or 'all'} / {t.tune_epochs or t.epochs:g}"
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} | {size if not source else '—'} | "
            + " | ".join(found)
            + " |"
        )
    return lines + [""]


def study_progress(folder: Path, task: str, method: str) -> str:
    """How far an unfinished study got: its trials by state and the best one so far (split score
    and setting), read from its study.db; "not tuned yet" where it has none."""
    from .tuning_budget import study_dir

    db = study_dir(folder, task, method) / "study.db"
    if not db.is_file():
        return "not tuned yet"
    import optuna

    from ...tuning.search import STUDY_NAME

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{db.resolve()}")
    trials = study.get_trials(deepcopy=False)
    counts = Counter(trial.state.name.lower() for trial in trials)
    text = "in progress: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if complete:
        best = max(complete, key=lambda t: t.value)
        text += f"; best so far {describe_settings(best.params)} (split {100 * best.value:.1f})"
    return text


def importances(folder: Path, task: str, method: str) -> tuple[dict[str, float] | None, str]:
    """A study's parameter importances: from its search.json, else computed from its study.db; None
    and why where there are none (no study yet, too few complete trials, a parameter never varied)."""
    from .tuning_budget import study_dir

    where = study_dir(folder, task, method)
    try:
        summary = json.loads((where / "search.json").read_text())
    except (OSError, ValueError):
        return None, "no study yet"
    if isinstance(summary.get("importances"), dict):
        return summary["importances"], ""
    if summary.get("importances_note"):
        return None, summary["importances_note"]
    if not (where / "study.db").is_file():
        return None, "no study.db"
    import optuna

    from ...tuning.results import param_importances
    from ...tuning.search import STUDY_NAME

    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{(where / 'study.db').resolve()}")
    found, note = param_importances(study)
    return found, note or ""


def importance_lines(protocol: Protocol, folder: Path, method: str = "p-tuning-v2") -> list[str]:
    """Optuna's importances (PED-ANOVA, summing to 1) of each searched parameter of `method`'s studies."""
    if method not in protocol.tune_spaces:
        return []
    # the importances weigh a split learning rate (lr, mlp_lr) as the one rate each trial trained at
    names = [name for name in protocol.tune_spaces[method] if name != "mlp_lr"]
    split = "mlp_lr" in protocol.tune_spaces[method]
    lines = [
        f"## Which settings mattered ({method})",
        "",
        "Optuna's parameter importances (`optuna.importance.get_param_importances`, PED-ANOVA over the "
        "complete trials; they sum to 1 per study). With so few trials they rank the parameters "
        "roughly, no more."
        + (" lr is the rate each trial trained at, lr or, through the MLP, mlp_lr." if split else ""),
        "",
        "| task | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for t in protocol.tasks:
        found, note = importances(folder, t.task, method)
        if found is None:
            lines.append(f"| {TASK_TITLES.get(t.task, t.task)} | " + f"{note} |" + " |" * (len(names) - 1))
        else:
            lines.append(
                f"| {TASK_TITLES.get(t.task, t.task)} | "
                + " | ".join(f"{found[n]:.2f}" if n in found else "—" for n in names)
                + " |"
            )
    return lines + [""]


def verdict_lines(table: Mapping[str, Any], protocol: Protocol) -> list[str]:
    """Per task: 'within 1 point: met', or 'missed by X' (the points short of the target)."""
    lines = [
        f"Target per task: p-tuning-v2 within {WITHIN_FT:g} point of fine-tuning (dev, mean over seeds).",
        "",
    ]
    for t in protocol.tasks:
        row = table.get(t.task, {})
        name = TASK_TITLES.get(t.task, t.task)
        if "p-tuning-v2" not in row or "fine-tune" not in row:
            lines.append(f"- {name}: not enough results.")
            continue
        gap = row["p-tuning-v2"]["mean"] - row["fine-tune"]["mean"]
        seeds = min(row["p-tuning-v2"]["n"], row["fine-tune"]["n"])
        state = "met" if gap >= -WITHIN_FT else f"missed by {-gap - WITHIN_FT:.1f}"
        lines.append(
            f"- {name}: within {WITHIN_FT:g} point: {state} (PT-2 − FT {gap:+.1f}, {seeds} seed(s))."
        )
    return lines + [""]


def study_folders(protocol: Protocol, folder: Path) -> list[tuple[Protocol, Path]]:
    """The study protocols and their report folders beside `folder` (this one for `protocol`)."""
    dry = protocol.name.endswith(DRY)
    out = []
    for name in STUDIES:
        other = PROTOCOLS[name]
        if other.name == protocol.name.removesuffix(DRY):
            out.append((protocol, Path(folder)))
        else:
            out.append((other, Path(folder).parent / (other.folder_name + (DRY if dry else ""))))
    return out


def scale_points(protocol: Protocol, folder: Path) -> dict[str, list[tuple[float, float, float | None]]]:
    """task -> [(backbone millions, PT-2 − FT mean, combined seed spread or None)] over the studies
    whose results are present."""
    from .aggregate import aggregate
    from .gaps import _gap
    from .run import read_results

    points: dict[str, list[tuple[float, float, float | None]]] = {}
    for name, (_, where) in zip(STUDIES, study_folders(protocol, folder), strict=True):
        size = STUDY_MILLIONS[name]
        table = aggregate(read_results(where))["table"]
        for task, row in table.items():
            if "p-tuning-v2" in row and "fine-tune" in row:
                gap, spread = _gap(row["p-tuning-v2"], row["fine-tune"])
                points.setdefault(task, []).append((size, gap, spread))
    return points


def plot_scale(points: Mapping[str, list[tuple[float, float, float | None]]], path: Path) -> bool:
    """PT-2 − FT against backbone size, a line per task; False (nothing drawn) without points."""
    if not points:
        return False
    from .plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for task, values in sorted(points.items()):
        values = sorted(values)
        xs, ys = [v[0] for v in values], [v[1] for v in values]
        errs = [v[2] if v[2] is not None and math.isfinite(v[2]) else 0.0 for v in values]
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=TASK_TITLES.get(task, task))
    ax.axhline(-WITHIN_FT, color="grey", linestyle="--", linewidth=1, label=f"target: -{WITHIN_FT:g}")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("backbone parameters (millions)")
    ax.set_ylabel("p-tuning-v2 − fine-tune (dev, points)")
    ax.legend(fontsize=8)
    _save(plt, fig, path)
    return True


def scale_lines(protocol: Protocol, folder: Path) -> list[str]:
    """The scale section: the plot and its numbers (from every study folder present)."""
    points = scale_points(protocol, folder)
    if not plot_scale(points, Path(folder) / SCALE_PNG):
        return ["## Scale", "", "No study has both p-tuning-v2 and fine-tune results yet.", ""]
    sizes = sorted({size for values in points.values() for size, _, _ in values})
    lines = [
        "## Scale",
        "",
        f"![p-tuning-v2 minus fine-tune against backbone size]({SCALE_PNG})",
        "",
        "P-Tuning v2 minus fine-tuning (dev, mean over seeds; bars: the two seed spreads combined) "
        "against the backbone's parameters, from every study folder present ("
        + ", ".join(str(where) for _, where in study_folders(protocol, folder))
        + "). The paper's claim is that the gap closes with scale.",
        "",
        "| task | " + " | ".join(f"{size:g}M" for size in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for task, values in sorted(points.items()):
        by_size = {size: (gap, spread) for size, gap, spread in values}
        cells = [
            (f"{by_size[s][0]:+.1f}" + (f" ± {by_size[s][1]:.1f}" if by_size[s][1] is not None else ""))
            if s in by_size
            else "—"
            for s in sizes
        ]
        lines.append(f"| {TASK_TITLES.get(task, task)} | " + " | ".join(cells) + " |")
    return lines + [""]
