"""`ptuning eval`: metrics of a saved checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import add_bf16_argument

DESCRIPTION = """Evaluate a checkpoint written by `ptuning train` on a task's validation split (by default the
task it was trained on; for a checkpoint trained on your own files, the validation file it was
trained with), or on your own file, print the metrics and write them to
<checkpoint>/eval_<task>_<split>.json (your file: <checkpoint>/eval_<task>_file_<file stem>.json);
a checkpoint that cannot be written (read-only) is still evaluated, with a warning that the file
was not saved (exit code 0).

Your file is read like the training files: the columns and the maximum sequence length recorded
in the checkpoint, unless given here. Labels are matched by name: a file whose labels come in
another order (or use only some of them) scores correctly; labels the checkpoint does not know are
refused, naming them.

examples:
  ptuning eval --checkpoint outputs/sst2-p-tuning-v2
  ptuning eval --checkpoint outputs/train-p-tuning-v2 --validation-file test.csv
  ptuning eval --checkpoint outputs/conll03-p-tuning-v2 --validation-file my_test.conll"""


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
        "--max-seq-length", type=int, default=None, help="(default: the checkpoint's, else 128)"
    )
    columns = parser.add_argument_group("columns of --validation-file (default: the checkpoint's)")
    columns.add_argument("--text-column", default=None)
    columns.add_argument("--text-pair-column", default=None)
    columns.add_argument("--label-column", default=None)
    columns.add_argument("--tag-column", type=int, default=None, help="CoNLL tag column index")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    add_bf16_argument(parser)


def result_name(task: str, split: str, validation_file: str | None) -> str:
    """Where an evaluation's metrics go: a user file never shares the name of a built-in split's."""
    if validation_file:
        return f"eval_{task}_file_{Path(validation_file).stem}.json"
    return f"eval_{task}_{split}.json"


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import CheckpointWriteError, atomic_write_text
    from ..errors import error_line
    from ..training.evaluation import evaluate_checkpoint

    checkpoint = Path(args.checkpoint)
    columns = {
        name: getattr(args, name)
        for name in ("text_column", "text_pair_column", "label_column", "tag_column")
        if getattr(args, name) is not None
    }
    metrics = evaluate_checkpoint(
        checkpoint,
        task=args.task,
        split=args.split,
        data_dir=args.data_dir,
        max_eval_samples=args.max_eval_samples,
        max_seq_length=args.max_seq_length,
        batch_size=args.batch_size,
        validation_file=args.validation_file,
        columns=columns,
        bf16=args.bf16,
    )
    # Trainer stamps its state's epoch on every evaluation: 0 here, where nothing trained
    metrics.pop("epoch", None)
    text = json.dumps(metrics, indent=2)
    print(text)
    try:
        atomic_write_text(
            checkpoint / result_name(metrics["task"], args.split, args.validation_file), text + "\n"
        )
    except CheckpointWriteError as exc:  # a read-only checkpoint still evaluates: the metrics are above
        print(f"ptuning eval: warning: metrics not saved: {error_line(exc)}", file=sys.stderr)
    return 0
