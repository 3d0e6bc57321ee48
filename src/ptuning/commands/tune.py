"""`ptuning tune`: search a method's hyperparameters with Optuna, every other train setting fixed."""

from __future__ import annotations

import argparse

from ..tuning.space import describe_spaces
from . import train as train_command

DESCRIPTION = f"""Search the hyperparameters of one method on one task with Optuna: a TPE sampler, median pruning of
poor trials from the dev metric of each evaluation (every epoch, or every --save-steps), and a SQLite
study in --output-dir (default: outputs/tune-<task>-<method>), so a killed search continues with
--resume and several processes given the same --output-dir --resume share one study. Every option of
`ptuning train` is a fixed setting of all trials (data, budget, seed, backbone, ...); the searched ones
take the trial's value. Each trial trains in <output-dir>/trials/<number> with the same --seed.

search spaces (a:b is a range, log-uniform for lr, uniform otherwise; a,b,c a choice):
{describe_spaces()}
  with --max-steps the epochs are not searched. --space replaces the range or choice of each
  parameter it names and adds parameters, e.g. --space lr=1e-3:1e-1,prefix_len=4,8,16,32,64 (also
  head_dropout, prompt_layers, batch_size); the default's other parameters are still searched
  unless --space-only. --dry-run prints the space and the budget and trains nothing.

One search writes into a folder at a time (another is refused, naming it), except processes given
--resume, which share it. A resumed search never proposes a finished trial's parameters again: a
seeded TPE sampler is reseeded from the seed and the number of trials in the study.

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
NOT_FIXED = (
    "output_dir",
    "resume",
    "resume_with_changes",
    "overwrite",
    "config",
    "quiet",
    "sampler",
    "sampler_seed",
    "space_only",
    "dry_run",
)
# fixed settings that name files or folders: best_config.json holds them absolute, so that it trains
# the same from any working folder
PATH_SETTINGS = ("train_file", "validation_file", "data_dir", "init_from")


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
        help="replace (or add) the searched range or choice of the parameters it names: name=low:high "
        "or name=a,b,c, comma-joined (e.g. lr=1e-3:1e-1,prefix_len=4,8,16,32,64); the default's other "
        "parameters are still searched unless --space-only",
    )
    search.add_argument(
        "--space-only",
        action="store_true",
        help="search only the parameters --space names (the others keep their train defaults)",
    )
    search.add_argument(
        "--dry-run",
        action="store_true",
        help="print the search space and the trial budget, and stop (no model, no torch, nothing written)",
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

    from ..errors import UserError
    from ..methods import get_method
    from ..training.config import MAIN_JOB_TASK
    from ..tuning.space import SpaceError, space_for
    from .settings_file import SettingsError, apply_settings_file

    try:
        args = apply_settings_file(args, add_arguments)
        if get_method(args.method).search_space is None:
            raise UserError(
                f"--method {args.method} has no hyperparameters to search (nothing trains by gradient)"
            )
        space, notes = space_for(args.method, args.space, max_steps=args.max_steps, only=args.space_only)
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
    for name in PATH_SETTINGS:
        if isinstance(fixed.get(name), str):
            fixed[name] = str(Path(fixed[name]).expanduser().resolve())
    if isinstance(fixed.get("backbone"), str) and Path(fixed["backbone"]).expanduser().is_dir():
        fixed["backbone"] = str(Path(fixed["backbone"]).expanduser().resolve())  # a local model folder
    task = args.task or (Path(args.train_file).stem if args.train_file else MAIN_JOB_TASK)
    output_dir = Path(args.output_dir or f"outputs/tune-{task}-{args.method}")
    if args.dry_run:
        _print_plan(args, space, notes, output_dir)
        return 0

    from ..training.output_dir import claim_output_dir
    from ..tuning.results import write_results
    from ..tuning.search import TuneConfig, TuneError, run_search

    cfg = TuneConfig(
        fixed=fixed,
        space=space,
        output_dir=output_dir,
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
    # --resume joins (or continues) a search: such processes share the folder, the study serialises them
    with claim_output_dir(output_dir, overwrite=args.overwrite, shared=args.resume):
        try:
            study = run_search(cfg, _trial_config)
        except TuneError as exc:
            raise UserError(str(exc)) from None
        write_results(study, cfg)
    return 0


def _print_plan(args: argparse.Namespace, space, notes: list[str], output_dir) -> None:
    """What `--dry-run` prints: the space, one parameter a line, and the budget."""
    from ..tuning.space import PARAMETERS

    print(f"search space of {args.method} ({len(space)} parameters):")
    for name, dist in space.items():
        print(f"  {name} (--{PARAMETERS[name][0].replace('_', '-')}): {dist.describe()}")
    length = f"--max-steps {args.max_steps}" if args.max_steps > 0 else "epochs as searched or --epochs"
    timeout = f", stopping new trials after {args.timeout:g} s" if args.timeout else ""
    print(
        f"budget: {args.trials} finished trials in all{timeout}; each trains {length} on "
        f"{args.max_train_samples if args.max_train_samples is not None else 'all'} examples "
        f"(--max-train-samples), sampler {args.sampler}"
        + (f" seed {args.sampler_seed}" if args.sampler_seed is not None else "")
    )
    state = "holds a search (--resume continues it)" if (output_dir / "study.db").is_file() else "new"
    print(f"output: {output_dir} ({state})")
    for note in notes:
        print(f"note: {note}")
