"""The `ptuning` command: one subcommand per module in `ptuning.commands`, registered below.

Each command module defines `DESCRIPTION`, `add_arguments(parser)` and `run(args) -> int`, and
imports at module level only what building its parser needs (no torch, no transformers): its
work's imports sit inside `run`. `ptuning --help` therefore loads no model code.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from ._version import __version__
from .commands import bench, evaluate, export, import_peft, info, predict, report, serve, train, tune
from .errors import UserError, error_line

__all__ = ["COMMANDS", "available_commands", "build_parser", "main"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "info": (info, "parameter counts of a backbone + method, and the known names"),
    "train": (train, "train a prompt (or fine-tune) on a task; writes a prompt-only checkpoint"),
    "tune": (
        tune,
        "search a method's hyperparameters with Optuna; writes best_config.json for train --config",
    ),
    "eval": (evaluate, "evaluate a saved checkpoint on a task's validation split"),
    "predict": (predict, "predict with a saved checkpoint; writes JSON lines"),
    "serve": (serve, "serve many tasks' prompts over HTTP from one frozen backbone"),
    "bench": (bench, "measure step time, memory and size of each method side by side"),
    "report": (report, "run the reduced reproduction protocol and write a report with plots"),
    "export": (export, "write a checkpoint as a PEFT adapter"),
    "import-peft": (import_peft, "bring a PEFT prefix- or prompt-tuning adapter in as a checkpoint"),
}

# printed as one line with exit code 2 (data, backbone and checkpoint errors are UserErrors)
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)

EPILOG = """examples:
  ptuning train                                   # P-Tuning v2, SST-2, MiniLM: the main job
  ptuning train --task conll03 --method fine-tune --epochs 3
  ptuning train --task rte --epochs auto --patience 3   # until dev accuracy stops rising
  ptuning tune --task rte --trials 20 --max-train-samples 1000   # Optuna search -> best_config.json
  ptuning eval --checkpoint outputs/sst2-p-tuning-v2
  ptuning predict --checkpoint outputs/sst2-p-tuning-v2 "a gripping, funny film"
  ptuning info --backbone minilm --method p-tuning-v2 --prefix-len 16
checkpoints go to outputs/<task>-<method> (your own files: tickets_train.csv -> outputs/tickets-p-tuning-v2).
data: --data-dir DIR, else $PTUNING_DATA, else the Hugging Face hub (needs a network)."""


def available_commands() -> dict[str, tuple[ModuleType, str]]:
    """The subcommands, name -> (module, one-line help)."""
    return dict(COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptuning",
        description="Deep prompt tuning (P-Tuning v2) of frozen transformer encoders, with baselines.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ptuning {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        child = sub.add_parser(
            name,
            help=help_text,
            description=getattr(module, "DESCRIPTION", help_text),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(child)
        child.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    argv = sys.argv[1:] if argv is None else argv
    # `ptuning` with no subcommand runs the main job, as `ptuning train` does.
    if not argv:
        argv = ["train"]
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = argv[1:]  # the command's own options, for --config FILE (ptuning.commands.settings_file)
    try:
        return int(args._module.run(args) or 0)
    except USER_ERRORS as exc:
        print(f"ptuning {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
