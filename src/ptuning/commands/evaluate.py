"""`ptuning eval`: metrics of a saved checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import add_bf16_argument

DESCRIPTION = """Evaluate a checkpoint written by `ptuning train` on a task's validation split (by default the
task it was trained on), print the metrics and write them to <checkpoint>/eval_<task>_<split>.json.

examples:
  ptuning eval --checkpoint outputs/sst2-p-tuning-v2
  ptuning eval --checkpoint outputs/my-run --validation-file my_dev.csv"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a folder written by ptuning train")
    parser.add_argument("--task", default=None, help="built-in task (default: the checkpoint's)")
    parser.add_argument(
        "--split", default="validation", choices=("validation", "train"), help="(default: validation)"
    )
    parser.add_argument(
        "--data-dir", default=None, help="benchmark folder (default: $PTUNING_DATA, else the hub)"
    )
    parser.add_argument(
        "--validation-file", default=None, help="your own evaluation file, same format as training"
    )
    parser.add_argument("--max-eval-samples", type=int, default=None, help="evaluate on a subset")
    parser.add_argument(
        "--max-seq-length", type=int, default=None, help="(default: the training run's, else 128)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    add_bf16_argument(parser)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import atomic_write_text
    from ..training import evaluate_checkpoint

    checkpoint = Path(args.checkpoint)
    max_len = args.max_seq_length
    if max_len is None:
        saved = checkpoint / "train_config.json"
        max_len = json.loads(saved.read_text()).get("max_seq_length", 128) if saved.is_file() else 128
    metrics = evaluate_checkpoint(
        checkpoint,
        task=args.task,
        split=args.split,
        data_dir=args.data_dir,
        max_eval_samples=args.max_eval_samples,
        max_seq_length=max_len,
        batch_size=args.batch_size,
        validation_file=args.validation_file,
        bf16=args.bf16,
    )
    text = json.dumps(metrics, indent=2)
    print(text)
    atomic_write_text(checkpoint / f"eval_{metrics['task']}_{args.split}.json", text + "\n")
    return 0
