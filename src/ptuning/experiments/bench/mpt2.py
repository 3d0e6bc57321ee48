"""MPT-2 on CoNLL-2004 (MiniLM, P-Tuning v2): the task alone against a prompt first trained on CoNLL-2003
and CoNLL-2004 together, then tuned on CoNLL-2004 (`--init-from`).

Four runs of `ptuning train`, one process each, the same settings (all 922 CoNLL04 training
sentences, E epochs, batch 16, 64 tokens, P = 16, lr 1e-2, seed 42; dev: all 231 CoNLL04 sentences):

  alone-E        conll04 alone, E epochs
  alone-2E       conll04 alone, 2E epochs (as many CoNLL04 steps as multitask + init-from)
  multitask      conll03,conll04 (922 sentences each, proportional sampling), E epochs: its conll04 head
  init-from      conll04, E epochs, starting from the multitask prompt (head fresh)

  OMP_NUM_THREADS=1 PTUNING_DATA=../shared/data python bench/bench_mpt2.py --output outputs/mpt2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def _run(output: Path, name: str, epochs: int, *extra: str) -> dict:
    folder = output / name
    if not (folder / "metrics.json").is_file():  # a rerun resumes where it stopped
        command = [
            sys.executable, "-m", "ptuning", "train", "--max-train-samples", "922", "--max-eval-samples", "231",
            "--epochs", str(epochs), "--batch-size", "16", "--max-seq-length", "64", "--prefix-len", "16",
            "--seed", "42", "--quiet", "--output-dir", str(folder), *extra,
        ]  # fmt: skip
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    if "per_task" in metrics:
        task = metrics["per_task"]["conll04"]
        return {"f1": task["validation"]["f1"], "seconds": metrics["train_seconds"]}
    return {"f1": metrics["validation"]["f1"], "seconds": metrics["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="outputs/mpt2")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    output, e = Path(args.output), args.epochs
    results = {
        f"alone-{e}": _run(output, f"alone-{e}", e, "--task", "conll04"),
        f"alone-{2 * e}": _run(output, f"alone-{2 * e}", 2 * e, "--task", "conll04"),
        "multitask": _run(output, "multitask", e, "--task", "conll03,conll04"),
        "init-from": _run(
            output, "init-from", e, "--task", "conll04", "--init-from", str(output / "multitask")
        ),
    }
    print("| run | CoNLL04 dev entity F1 | train seconds |\n| --- | --- | --- |")
    for name, row in results.items():
        print(f"| {name} | {100 * row['f1']:.1f} | {row['seconds']:.0f} |")
    (output / "summary.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
