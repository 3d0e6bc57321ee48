"""Dev accuracy with the frozen backbone held in bf16 against plain bf16 autocast, seed by seed.

Under `--bf16` the trainer casts the frozen matrix weights to bf16 once (`precision.hold_frozen_in_bf16`)
instead of letting autocast cast them at every step. This trains the same runs both ways and writes
each run's dev score, each mode's mean and spread, and the difference:

  python bench/bench_bf16_accuracy.py --output bf16-accuracy.json            # on a GPU / native-bf16 CPU
  python bench/bench_bf16_accuracy.py --dry-run --output /tmp/bf16-dry.json  # tiny slices, any machine

Runs: the main job (`ptuning train`, p-tuning-v2 on SST-2 with its own budget) and p-tuning-v2 on
CoNLL-2003 (`--conll-epochs` epochs, batch 32), seeds 0 and 1 by default; `--parallel` runs at once,
each in its own process. The "autocast" mode is the same command with the one-time cast switched off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

MODES = ("frozen-bf16", "autocast")


def _one(mode: str, train_args: list[str]) -> int:
    """In a child process: `ptuning train` with the one-time cast on (frozen-bf16) or off (autocast)."""
    from ptuning import cli
    from ptuning.training import trainer

    if mode == "autocast":
        trainer.hold_frozen_in_bf16 = lambda model: 0
    return cli.main(["train", *train_args])


def _runs(args: argparse.Namespace) -> list[tuple[str, int, list[str]]]:
    tiny = ["--max-train-samples", "32", "--max-eval-samples", "32", "--epochs", "1"] if args.dry_run else []
    conll = ["--task", "conll03", "--method", "p-tuning-v2", "--batch-size", "32"]
    conll += tiny or ["--epochs", str(args.conll_epochs)]
    out = []
    for seed in args.seeds:
        if "sst2" in args.tasks:
            out.append(("sst2", seed, tiny))  # the main job: `ptuning train` with no task options
        if "conll03" in args.tasks:
            out.append(("conll03", seed, conll))
    return out


def _train(args: argparse.Namespace, task: str, seed: int, extra: list[str], mode: str, work: Path) -> dict:
    folder = work / f"{task}-{mode}-seed{seed}"
    command = [sys.executable, __file__, "--one", mode, "--", *extra, "--seed", str(seed)]
    command += ["--output-dir", str(folder), "--bf16"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    row = {"task": task, "seed": seed, "mode": mode, "seconds": round(seconds, 1)}
    metrics_file = folder / "metrics.json"
    if done.returncode != 0 or not metrics_file.is_file():
        row["error"] = (done.stderr or done.stdout)[-2000:]
        return row
    metrics = json.loads(metrics_file.read_text())
    row["metric"] = metrics["metric"]
    row["score"] = metrics["validation"][metrics["metric"]]
    row["precision"] = metrics.get("precision")
    row["train_seconds"] = metrics.get("train_seconds")
    return row


def _summary(rows: list[dict]) -> dict:
    out: dict = {}
    for task in sorted({r["task"] for r in rows}):
        per_mode = {}
        for mode in MODES:
            scores = [r["score"] for r in rows if r["task"] == task and r["mode"] == mode and "score" in r]
            per_mode[mode] = {
                "scores": scores,
                "mean": statistics.fmean(scores) if scores else None,
                "spread": (max(scores) - min(scores)) if len(scores) > 1 else None,
            }
        a, b = per_mode["frozen-bf16"]["mean"], per_mode["autocast"]["mean"]
        per_mode["difference"] = None if a is None or b is None else a - b
        out[task] = per_mode
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--one"]:
        return _one(argv[1], argv[3:])  # --one MODE -- TRAIN ARGS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, required=True, help="the JSON file written")
    parser.add_argument("--tasks", nargs="+", default=["sst2", "conll03"], choices=["sst2", "conll03"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--conll-epochs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (default: 2)")
    parser.add_argument("--data-dir", default=None, help="benchmark folder (default: $PTUNING_DATA)")
    parser.add_argument("--dry-run", action="store_true", help="32 examples, one epoch: a check that it runs")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def write() -> dict:  # after every run: a run cut by a time limit keeps the ones before it
        result = {"rows": rows, "summary": _summary(rows), "dry_run": args.dry_run}
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        return result

    with tempfile.TemporaryDirectory(prefix="bf16-accuracy-") as tmp:
        # both modes of a (task, seed) side by side, so a cut run leaves pairs
        jobs = [(task, seed, extra, mode) for task, seed, extra in _runs(args) for mode in MODES]
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            futures = [pool.submit(_train, args, *job, Path(tmp)) for job in jobs]
            for future in as_completed(futures):
                rows.append(future.result())
                print(json.dumps(rows[-1])[:300], flush=True)
                write()
    result = write()
    for task, per_mode in result["summary"].items():
        line = ", ".join(
            f"{mode} {per_mode[mode]['mean']:.4f}" if per_mode[mode]["mean"] is not None else f"{mode} -"
            for mode in MODES
        )
        print(f"{task}: {line}; difference {per_mode['difference']}")
    failed = [r for r in rows if "error" in r]
    for r in failed:
        print(f"failed: {r['task']} seed {r['seed']} {r['mode']}: {r['error'][-400:]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
