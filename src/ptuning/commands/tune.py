"""`ptuning tune`: search a method's hyperparameters with Optuna, every other train setting fixed."""

from __future__ import annotations

import argparse

from ..search_space import describe_spaces
from . import train as train_command

DESCRIPTION = f"""Search the hyperparameters of one method on one task with Optuna: a TPE sampler, median pruning of
poor trials from the dev metric of each evaluation (every epoch, or every --save-steps), and a SQLite
study in --output-dir (default: outputs/tune-<task>-<method>), so a killed search continues with
--resume and several processes given the same --output-dir --resume share one study. Every option of
`ptuning train` is a fixed setting of all trials (data, budget, seed, backbone, ...); the searched ones
take the trial's value. Each trial trains in <output-dir>/trials/<number> with the same --seed.

search spaces (a:b is a range, log-uniform for lr, uniform otherwise; a,b,c a choice):
{describe_spaces()}
  with --max-steps the epochs are not searched. Change or add parameters with --space, e.g.
  --space lr=1e-3:1e-1,prefix_len=4,8,16,32,64 (also head_dropout, prompt_layers, batch_size).

writes into --output-dir:
  study.db            the Optuna study (SQLite)
  best_config.json    the best trial's settings: ptuning train --config best_config.json trains it
  trials.csv          one row a trial (state, value, seconds, parameters); also printed
  search.json         best trial, its metric and folder, the space, notes
  optimization_history.png, param_importances.png   (importances need >= 2 complete trials)

examples:
  ptuning tune --task rte --method p-tuning-v2 --trials 20 --max-train-samples 1000
  ptuning tune --task sst2 --method prompt-tuning --trials 10 --timeout 1800 --space lr=1e-2:3e-1
  ptuning tune --task rte --method p-tuning-v2 --trials 30 --resume     # continue (or join) the search
  ptuning train --config outputs/tune-rte-p-tuning-v2/best_config.json --max-train-samples 2500"""

# what `tune` means by these train options (they are not train settings of the trials)
SEARCH_OPTIONS = {
    "output_dir": "the search's folder (default: outputs/tune-<task>-<method>)",
    "resume": "continue the search in --output-dir (or join it from another process)",
    "overwrite": "delete the search in --output-dir and start afresh",
    "config": "a JSON object of fixed train settings, option names as keys (e.g. a best_config.json); "
    "options on the command line override it",
}
NOT_FIXED = ("output_dir", "resume", "overwrite", "config", "quiet", "sampler", "sampler_seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train_command.add_arguments(parser)
    for action in parser._actions:
        if action.dest in SEARCH_OPTIONS:
            action.help = SEARCH_OPTIONS[action.dest]
    search = parser.add_argument_group("search")
    search.add_argument(
        "--trials", type=int, default=20, help="finished (complete or pruned) trials in all (default: 20)"
    )
    search.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="stop starting trials after this"
    )
    search.add_argument(
        "--sampler",
        choices=("tpe", "qmc"),
        default="tpe",
        help="tpe (default): Optuna's TPE, random for its first 10 trials, then guided by the results; "
        "qmc: a scrambled Sobol sequence, which spreads a few trials evenly over the space (what "
        "`ptuning report --protocol cpu-converged` uses for its 4-trial budgets)",
    )
    search.add_argument(
        "--sampler-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the sampler, so the same search proposes the same trials (default: a fresh one)",
    )
    search.add_argument(
        "--space",
        default=None,
        help="change the searched parameters: name=low:high or name=a,b,c, comma-joined "
        "(e.g. lr=1e-3:1e-1,prefix_len=4,8,16,32,64)",
    )


def _train_options() -> list[str]:
    parser = argparse.ArgumentParser(add_help=False)
    train_command.add_arguments(parser)
    return list(vars(parser.parse_args([])))


def _trial_config(settings: argparse.Namespace):
    """A trial's TrainConfig from its settings (no progress bar: the trial lines stay readable)."""
    return train_command.config_from_args(argparse.Namespace(**vars(settings), quiet=True))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import HANDCRAFTED
    from ..errors import UserError
    from ..search_space import SpaceError, space_for
    from ..settings_file import SettingsError, apply_settings_file
    from ..train_config import MAIN_JOB_TASK

    try:
        args = apply_settings_file(args, add_arguments)
        if args.method == HANDCRAFTED:
            raise UserError(
                "--method handcrafted has no hyperparameters to search (nothing trains by gradient)"
            )
        space, notes = space_for(args.method, args.space, max_steps=args.max_steps)
    except (SettingsError, SpaceError) as exc:
        raise UserError(str(exc)) from None
    if args.trials < 1:
        raise UserError(f"--trials must be >= 1, got {args.trials}")
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if "," in (args.task or "") or "," in (args.train_file or ""):
        raise UserError("ptuning tune searches one task at a time; --task names several")
    train_command.config_from_args(args)  # the fixed settings' own one-line errors, before any trial
    fixed = {name: getattr(args, name) for name in _train_options() if name not in NOT_FIXED}

    from ..tuning import TuneConfig, TuneError, run_search, write_results

    task = args.task or (Path(args.train_file).stem if args.train_file else MAIN_JOB_TASK)
    cfg = TuneConfig(
        fixed=fixed,
        space=space,
        output_dir=Path(args.output_dir or f"outputs/tune-{task}-{args.method}"),
        trials=args.trials,
        timeout=args.timeout,
        resume=args.resume,
        overwrite=args.overwrite,
        notes=notes,
        seed=args.sampler_seed,
        sampler=args.sampler,
    )
    for note in notes:
        print(f"note: {note}")
    try:
        study = run_search(cfg, _trial_config)
    except TuneError as exc:
        raise UserError(str(exc)) from None
    write_results(study, cfg)
    return 0
