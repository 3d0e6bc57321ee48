"""`ptuning report`: run the reproduction protocol and write reports/<name>/report.md with plots."""

from __future__ import annotations

import argparse
import shlex
import sys

DESCRIPTION = """Compare fine-tune, prompt-tuning, prefix-tuning and p-tuning-v2 on SST-2, RTE, CoNLL-2003 and
SQuAD (dev split by article) on one backbone, several seeds, and write into reports/<name>/:
  results.jsonl      one line per finished run (written as each finishes: a rerun skips them)
  results.json       every run, the aggregates and the paper's figures
  report.md          the table (mean ± std over seeds) beside the paper's figures, and verdicts
  learning_curves.png, metric_vs_params.png, prompt_length.png

Protocols (`--protocol`): `cpu` (default) is a reduced protocol sized for under an hour on 2 CPU
cores (subsets, short sequences, 3-4 epochs, 2-3 seeds); `gpu` trains whole training sets (SST-2, RTE,
MRPC, CoNLL-2003, SQuAD) in about 7 minutes of one H100 with --jobs 4 (bf16 on CUDA;
scripts/gpu_report.sh packs what it needs for a machine without network); `full` (or `--full`) is a
longer GPU protocol (more epochs, 3 seeds). `--dry-run` runs any protocol on 32-example slices for one
epoch into reports/<name>-dry-run: a check that every cell runs, not a result.

examples:
  ptuning report --data-dir ../shared/data --jobs 2   # reports/cpu, two cells at a time
  ptuning report --tasks sst2 rte              # only some tasks (the rest stay 'not run')
  ptuning report --render-only                 # rebuild report.md and plots from results.jsonl
                                               # (a bad line there is an error naming it)
  ptuning report --protocol gpu --jobs 4 --name gpu-h100
  ptuning report --protocol gpu --dry-run --data-dir ../shared/data   # every cell, tiny slices, CPU
  ptuning report --protocol study --jobs 2     # reports/study-minilm: tuned on a 10% split, dev once
  ptuning report --protocol study-mpnet --jobs 2   # reports/study-mpnet, with MiniLM's settings"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=None, help="report folder name (default: the protocol's name)")
    parser.add_argument("--reports-dir", default="reports", help="(default: reports)")
    parser.add_argument(
        "--protocol",
        choices=("cpu", "cpu-converged", "gpu", "full", "study", "study-mpnet", "study-gpu"),
        default="cpu",
        help="which protocol (default: cpu)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="SEED",
        help="every task's seeds, e.g. --seeds 0 1 (default: the protocol's)",
    )
    parser.add_argument("--full", action="store_true", help="the same as --protocol full")
    parser.add_argument(
        "--dry-run", action="store_true", help="32-example slices, one epoch, one seed: check every cell runs"
    )
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="run only these tasks of the protocol (default: all)"
    )
    parser.add_argument(
        "--render-only", action="store_true", help="train nothing; render from the results file"
    )
    parser.add_argument(
        "--tune-only",
        action="store_true",
        help="a protocol with tuning (cpu-converged): run its tuning studies, no final cell",
    )
    parser.add_argument(
        "--data-dir", default=None, help="benchmark data folder (default: $PTUNING_DATA, else the hub)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="cells trained at once, each in its own process (default: 1)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per cell (default: torch's; 1 with --jobs > 1)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..experiments.report import PROTOCOLS, dry_run, read_results
    from ..experiments.report.protocols import RESULTS
    from ..experiments.report.tuning_budget import TUNING_DIR
    from ..training.output_dir import claim_output_dir

    protocol = PROTOCOLS["full" if args.full else args.protocol]
    if args.seeds:
        from dataclasses import replace

        protocol = replace(protocol, seeds=tuple(dict.fromkeys(args.seeds)))
    if args.dry_run:
        protocol = dry_run(protocol)
    folder = Path(args.reports_dir) / (args.name or protocol.folder_name)
    # a study still in its tuning has no results yet: its report shows the trials so far
    tuning_so_far = (
        protocol.tune_trials and (folder / TUNING_DIR).is_dir() and not (folder / RESULTS).exists()
    )
    if args.render_only and not tuning_so_far:  # every line checked first: a bad one is one error naming it
        read_results(folder, strict=True)
    # one writer per report folder: a second `ptuning report` on it is refused, naming the first
    with claim_output_dir(folder, option="report folder"):
        return _run(args, protocol, folder)


def _run(args: argparse.Namespace, protocol, folder) -> int:
    from ..experiments.report import render, run_protocol

    command = "ptuning " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    if not args.render_only:
        threads = args.threads or (1 if args.jobs > 1 else None)
        run_protocol(
            protocol,
            folder,
            tasks=args.tasks,
            bf16=protocol.bf16,
            data_dir=args.data_dir,
            jobs=args.jobs,
            threads=threads,
            log=_log,
            tune_only=args.tune_only,
        )
    rendered_by = ""
    if args.render_only:  # keep the command that ran the protocol; say who rendered it again
        import json

        try:
            before = json.loads((folder / "results.json").read_text())
        except (OSError, ValueError, RecursionError):  # none yet, or not ours to trust: say who renders
            before = {}
        if isinstance(before, dict) and isinstance(before.get("command"), str) and before["command"]:
            rendered_by, command = command, before["command"]
    path = render(protocol, folder, command=command, rendered_by=rendered_by)
    print(f"report: {path}")
    return 0


def _log(message: str) -> None:
    print(message, flush=True)
