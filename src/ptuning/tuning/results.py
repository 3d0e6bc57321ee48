"""What a finished (or stopped) search leaves in its folder: trials.csv, best_config.json (the fixed
settings plus the best trial's, in `ptuning train --config` form), search.json, and Optuna's
optimisation history and parameter importances, as numbers and as plots.

The importances are PED-ANOVA's (Watanabe et al., IJCAI 2023; Optuna 5's default evaluator, named
here so Optuna 4 computes the same), over the same view of the study for the numbers and the plot,
so search.json, the report's table and param_importances.png agree.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import TrialState

from ..checkpoint import atomic_write_text
from .search import TuneConfig, finished_trials, settings_of

BEST_CONFIG = "best_config.json"
TRIALS_CSV = "trials.csv"
SUMMARY = "search.json"
HISTORY_PNG = "optimization_history.png"
IMPORTANCES_PNG = "param_importances.png"


def trials_table(study: optuna.Study):
    """A pandas DataFrame, one row a trial: number, state, value, seconds, then the parameters."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params"))
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds().round(1)
        frame = frame.rename(columns={"duration": "seconds"})
    return frame.rename(columns=lambda column: column.removeprefix("params_"))


def write_results(study: optuna.Study, cfg: TuneConfig) -> dict[str, Any]:
    """trials.csv, best_config.json, search.json and the plots; prints the table. Returns search.json."""
    out = cfg.output_dir
    frame = trials_table(study)
    frame.to_csv(out / TRIALS_CSV, index=False)
    print(frame.to_string(index=False))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    summary: dict[str, Any] = {
        "trials": len(study.trials),
        "finished": finished_trials(study),
        "complete": len(complete),
        "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        "space": {name: dist.describe() for name, dist in cfg.space.items()},
        "plots": [],
        "notes": list(cfg.notes),
    }
    if complete:
        best = study.best_trial
        settings = settings_of(cfg.fixed, best.params)
        atomic_write_text(out / BEST_CONFIG, json.dumps(settings, indent=2) + "\n")
        summary.update(
            best_trial=best.number,
            best_value=best.value,
            metric=best.user_attrs.get("metric"),
            best_params=best.params,
            best_output_dir=best.user_attrs.get("output_dir"),
        )
        print(
            f"best: trial {best.number}, {best.user_attrs.get('metric', 'metric')} {best.value:.4f} "
            f"{json.dumps(best.params)}; settings in {out / BEST_CONFIG}"
        )
    else:
        summary["notes"].append("no trial completed: no best_config.json")
    view = _importance_view(study)  # one view for the numbers and the plot
    summary["importances"], summary["importances_note"] = _importances(*view)
    summary["plots"], plot_notes = _plots(study, view, out, summary.get("metric") or "value")
    summary["notes"].extend(plot_notes)
    for note in summary["notes"]:
        print(f"note: {note}")
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def param_importances(study: optuna.Study) -> tuple[dict[str, float] | None, str | None]:
    """Optuna's parameter importances (PED-ANOVA over the complete trials; they sum to 1), or None
    and why not: too few complete trials, or parameters that never varied."""
    return _importances(*_importance_view(study))


def _importances(view: optuna.Study | None, note: str | None) -> tuple[dict[str, float] | None, str | None]:
    if view is None:
        return None, note
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = optuna.importance.get_param_importances(view, evaluator=_evaluator())
        except (ValueError, RuntimeError) as exc:
            return None, f"no parameter importances: {str(exc).splitlines()[0]}"
    return {name: float(value) for name, value in found.items()}, None


def _evaluator() -> PedAnovaImportanceEvaluator:
    return PedAnovaImportanceEvaluator()


def _importance_view(study: optuna.Study) -> tuple[optuna.Study | None, str | None]:
    """The study the importances are computed on (`_one_rate`'s view of it), or None and why."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return (
            None,
            f"no parameter importances: they need >= 2 complete trials, the study has {len(complete)}",
        )
    return _one_rate(study, complete), None


def _one_rate(study: optuna.Study, complete: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    """`study`, or where its trials drew `lr` or `mlp_lr` by their prefix_projection, a copy in
    memory whose trials have `lr`, the rate they trained at, over both ranges: apart, each rate
    would be weighed over only the trials that drew it, where the question is how much the rate a
    trial trained at matters."""
    if not any("mlp_lr" in t.params for t in complete):
        return study
    rates = [t.params.get("mlp_lr", t.params.get("lr")) for t in complete]
    span = optuna.distributions.FloatDistribution(min(rates), max(rates), log=True)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        merged = optuna.create_study(direction=study.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for trial, rate in zip(complete, rates, strict=True):
        params = {k: v for k, v in trial.params.items() if k not in ("lr", "mlp_lr")}
        dists = {k: v for k, v in trial.distributions.items() if k in params}
        merged.add_trial(
            optuna.trial.create_trial(
                params={**params, "lr": rate}, distributions={**dists, "lr": span}, value=trial.value
            )
        )
    return merged


def _plots(
    study: optuna.Study, importance_view: tuple[optuna.Study | None, str | None], out: Path, metric: str
) -> tuple[list[str], list[str]]:
    """optimization_history.png of every trial, and param_importances.png of `importance_view` (the
    view and evaluator of `param_importances`); the names written and why any was not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    written, notes = [], []
    target = f"dev {metric}"
    plots = [(HISTORY_PNG, lambda: optuna_plots.plot_optimization_history(study, target_name=target))]
    view, note = importance_view
    if view is None:
        notes.append(note)
    else:
        plots.append(
            (
                IMPORTANCES_PNG,
                lambda: optuna_plots.plot_param_importances(view, evaluator=_evaluator(), target_name=target),
            )
        )
    for name, plot in plots:
        with warnings.catch_warnings():  # "experimental"; importances of near-equal trials
            warnings.simplefilter("ignore")
            try:
                axes = plot()
            except (ValueError, RuntimeError) as exc:  # e.g. importances of parameters that never varied
                notes.append(f"no {name}: {str(exc).splitlines()[0]}")
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.tight_layout()
        figure.savefig(out / name, dpi=120)
        plt.close(figure)
        written.append(name)
    return written, notes
