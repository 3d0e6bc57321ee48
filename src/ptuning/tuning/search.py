"""Hyperparameter search over `ptuning train` settings with Optuna (what `ptuning tune` runs).

Optuna brings the loop, the TPE sampler, median pruning and the SQLite study that a killed search
resumes from (and that several processes share). We add the objective (one `training.train` run per
trial, each in `trials/<number>`; a trial retried after its process died resumes in the folder of
the trial it retries), a Trainer callback that reports the per-evaluation dev metric so poor trials
are pruned. What a finished search writes (best_config.json, trials.csv, search.json, the plots)
is `ptuning.tuning.results`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.trial import TrialState
from transformers import TrainerCallback

from ..training.config import TrainConfig
from ..training.prefix_watch import PrefixWatch, describe
from ..training.run import train
from ..training.trainer import CHECKPOINTS
from .space import PARAMETERS, Choice, Range, Space, in_draw_order, searched

STUDY_DB = "study.db"
STUDY_LOCK = "study.db.lock"
STUDY_NAME = "ptuning"
TRIALS_DIR = "trials"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# a trial whose process was killed stops beating: after the grace period Optuna marks it failed, and
# RetryHeartbeatStaleTrialCallback queues its parameters again
HEARTBEAT_S, GRACE_S = 60, 180
# how often a trial whose process died is queued again; each retry continues where the last stopped
MAX_RETRIES = 3


class TuneError(ValueError):
    """A search that cannot run as asked (one line)."""


@dataclass
class TuneConfig:
    """A search: `fixed` train settings (option names -> values) for every trial, and the space."""

    fixed: dict[str, Any]
    space: Space
    output_dir: Path
    trials: int = 20
    timeout: float | None = None
    resume: bool = False
    overwrite: bool = False
    notes: list[str] = field(default_factory=list)
    seed: int | None = None  # the sampler's seed (None: a fresh one)
    # "tpe"; "qmc" (a scrambled Sobol sequence) covers the space evenly in few trials, where TPE is
    # still in its random start-up phase (its first 10 trials)
    sampler: str = "tpe"
    # "median"; "successive-halving" or "hyperband" (Optuna's, over epochs with `by_epoch`): a trial
    # goes on past 1, 3, 9, ... epochs only while it is among the best third of the trials that got
    # there, so poor settings stop early and good ones train to their cap
    pruner: str = "median"
    max_resource: int | None = None  # hyperband: the trials' most epochs (steps without by_epoch)
    # report each evaluation at its epoch (1, 2, ...) rather than its optimizer step, so that
    # pruning resources are epochs
    by_epoch: bool = False


class PruneCallback(TrainerCallback):
    """Reports each evaluation's dev metric to the trial and stops the run when Optuna prunes it,
    or when the prefix has outgrown the backbone's keys and values (`PrefixWatch`): no trial of
    the study's recovered from that (its metric stays at the majority class's), and tied trials
    are not pruned by successive halving, so each would run until early stopping ended it."""

    def __init__(self, trial: optuna.Trial, *, by_epoch: bool = False) -> None:
        self.trial = trial
        self.by_epoch = by_epoch
        self.finished = False
        self.reported: set[int] = set()
        self.watch = PrefixWatch(say=False)

    def on_train_begin(self, args, state, control, **kwargs):
        self.watch.on_train_begin(args, state, control, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        self.finished = True  # the final evaluation of the best checkpoint is no new information

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(args.metric_for_best_model)
        # an epoch's evaluation comes at (about) a whole epoch: 1, 2, ...
        step = max(1, round(state.epoch or 0)) if self.by_epoch else state.global_step
        if self.finished or value is None or step in self.reported:
            return
        self.reported.add(step)
        self.trial.set_user_attr("metric", args.metric_for_best_model.removeprefix("eval_"))
        self.trial.report(float(value), step=step)
        unit = "epoch" if self.by_epoch else "step"
        outgrown = self.watch.check(kwargs.get("model"))
        if outgrown is not None:
            why = f"the prefix's {describe(outgrown)}"
            self.trial.set_user_attr("pruned_because", why)
            raise optuna.TrialPruned(f"{args.metric_for_best_model} {value:.4g} at {unit} {step}: {why}")
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{args.metric_for_best_model} {value:.4g} at {unit} {step}")


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """One point of `space`, keyed by parameter name."""
    params: dict[str, Any] = {}
    for name in in_draw_order(space):
        dist = space[name]
        if not searched(name, space, params):
            continue
        kind = PARAMETERS[name][1]
        if isinstance(dist, Choice):
            params[name] = trial.suggest_categorical(name, list(dist.values))
        elif kind is int:
            params[name] = trial.suggest_int(name, int(dist.low), int(dist.high))
        else:
            assert isinstance(dist, Range)
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return params


def settings_of(fixed: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Train settings (option names) of a trial: the fixed ones with the trial's parameters."""
    return {**fixed, **{PARAMETERS[name][0]: value for name, value in params.items()}}


def retried_folder(cfg: TuneConfig, trial: optuna.Trial) -> Path | None:
    """The folder of the trial that `trial` retries, where it holds training checkpoints, else None.

    A trial whose process died (a stop, a kill) goes stale and Optuna queues a retry with the same
    parameters (`RetryHeartbeatStaleTrialCallback`); the retry then resumes that trial's training run
    from its last complete epoch in its folder instead of training again from the start."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(frozen)
    if not history:
        return None
    folder = cfg.output_dir / TRIALS_DIR / str(history[-1])
    return folder if (folder / CHECKPOINTS).is_dir() else None


def _storage(db: Path) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            f"sqlite:///{db.resolve()}",
            engine_kwargs={"connect_args": {"timeout": 60}},  # several processes wait for the lock
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            # the retry resumes the stale trial's run (`retried_folder`): it keeps its reported epochs
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRIES, inherit_intermediate_values=True
            ),
        )


def _sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "qmc":
        with warnings.catch_warnings():  # "experimental" in some Optuna releases
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    return optuna.samplers.TPESampler(seed=seed)


PRUNERS = ("median", "successive-halving", "hyperband")


def _pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=cfg.max_resource or "auto", reduction_factor=3
        )
    if cfg.pruner != "median":
        raise TuneError(f"unknown pruner {cfg.pruner!r}; known: {', '.join(PRUNERS)}")
    return optuna.pruners.MedianPruner(n_startup_trials=3)


def _create(
    storage: optuna.storages.RDBStorage,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    return optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="maximize",  # every task metric here is better higher (trainer.py's greater_is_better)
        sampler=sampler,
        pruner=pruner,  # not stored in the study: every opening sets it again
        load_if_exists=True,
    )


def open_study(cfg: TuneConfig) -> optuna.Study:
    """The study in `<output_dir>/study.db`: new, or (with resume) the one there. A study whose trials
    all failed (a data error before any training) is taken up again without --resume."""
    db = cfg.output_dir / STUDY_DB
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    # processes starting together would race to create the tables ("table ... already exists")
    with FileLock(cfg.output_dir / STUDY_LOCK):
        return _open(cfg, db)


def _open(cfg: TuneConfig, db: Path) -> optuna.Study:
    storage = _storage(db)
    study = _create(storage, _sampler(cfg.sampler, cfg.seed), _pruner(cfg))
    started = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING))
    if started and not cfg.resume:
        if not cfg.overwrite:
            raise TuneError(
                f"{cfg.output_dir} already holds a search ({db}, {len(started)} trials): give --resume to "
                "continue it, --overwrite to start afresh, or another --output-dir"
            )
        optuna.delete_study(study_name=STUDY_NAME, storage=storage)
        shutil.rmtree(cfg.output_dir / TRIALS_DIR, ignore_errors=True)
        study, started = _create(storage, _sampler(cfg.sampler, cfg.seed), _pruner(cfg)), []
    study.sampler = _resumed_sampler(cfg, len(study.trials))
    recorded = study.user_attrs.get("fixed")
    if recorded is None or not started:
        study.set_user_attr("fixed", cfg.fixed)
    else:
        changed = sorted(
            key for key in set(recorded) | set(cfg.fixed) if recorded.get(key) != cfg.fixed.get(key)
        )
        if changed:
            key = changed[0]
            raise TuneError(
                f"{db} is a search with other fixed settings ({key}: {recorded.get(key)!r} there, "
                f"{cfg.fixed.get(key)!r} now): give the same settings, or another --output-dir"
            )
    return study


def _resumed_sampler(cfg: TuneConfig, trials: int) -> optuna.samplers.BaseSampler:
    """The sampler of a study that already holds `trials` trials. A seeded TPE sampler keeps no state
    in the study: started again from its seed it would propose the finished trials' parameters once
    more, so it is seeded from the seed plus the trials so far (still repeatable). QMC takes its place
    in the Sobol sequence from the study itself."""
    if trials and cfg.seed is not None and cfg.sampler == "tpe":
        return _sampler(cfg.sampler, cfg.seed + trials)
    return _sampler(cfg.sampler, cfg.seed)


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_search(cfg: TuneConfig, build: Callable[[argparse.Namespace], TrainConfig]) -> optuna.Study:
    """Run trials until the study holds `cfg.trials` finished (complete or pruned) ones, or the timeout.

    `build` turns a trial's settings (an argparse namespace of `ptuning train` options) into its
    TrainConfig."""
    # Optuna's own log lines ("study created", a failed trial's traceback) stay off stderr: we print
    # each trial, and a failure is the command's one-line error
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return _search(cfg, build)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _search(cfg: TuneConfig, build: Callable[[argparse.Namespace], TrainConfig]) -> optuna.Study:
    study = open_study(cfg)
    done = finished_trials(study)
    if done:
        print(f"resuming the search in {cfg.output_dir}: {done} of {cfg.trials} trials finished")

    def objective(trial: optuna.Trial) -> float:
        retried = retried_folder(cfg, trial)
        folder = retried or cfg.output_dir / TRIALS_DIR / str(trial.number)
        settings = settings_of(cfg.fixed, suggest(trial, cfg.space))
        resume = retried is not None
        namespace = argparse.Namespace(
            **settings, output_dir=str(folder), resume=resume, overwrite=not resume
        )
        if resume:
            print(
                f"trial {trial.number} retries trial {folder.name}: it continues from that trial's checkpoints"
            )
        train_cfg = build(namespace)
        trial.set_user_attr("output_dir", str(folder))
        print(f"trial {trial.number}: {json.dumps(trial.params)}")
        try:
            metrics = train(train_cfg, callbacks=[PruneCallback(trial, by_epoch=cfg.by_epoch)])
        finally:
            shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)  # optimizer states: not needed after
        trial.set_user_attr("metric", metrics["metric"])  # also where no evaluation ran before the end
        return float(metrics["validation"][metrics["metric"]])

    if done < cfg.trials:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(
                objective,
                n_trials=cfg.trials - done,
                timeout=cfg.timeout,
                # MaxTrialsCallback counts the trials of every process sharing the study
                callbacks=[optuna.study.MaxTrialsCallback(cfg.trials, states=FINISHED), _print_trial],
                gc_after_trial=True,
            )
    return study


def _print_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    # a pruned trial's value is the last metric it reported
    value = f" {trial.user_attrs.get('metric', 'value')} {trial.value:.4f}" if trial.value is not None else ""
    # not study.best_trial: it raises while no trial has completed (the first ones pruned or failed)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    leader = max(complete, key=lambda t: t.value, default=None) if value else None
    best = f" (best so far: trial {leader.number})" if leader is not None else ""
    print(f"trial {trial.number} {trial.state.name.lower()}{value}{best}")
