"""`ptuning predict`: predictions of a saved checkpoint, as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import add_bf16_argument

DESCRIPTION = """Predict with a checkpoint written by `ptuning train`. Inputs are texts on the command line or
a JSONL file (one input per line). Writes one JSON object per input to --output (default: stdout).

input lines by task type:
  classification       {"text": "...", "text_pair": "..."}   (or a plain JSON string)
  multiple choice      {"context": "...", "choices": ["...", "..."]}
  token classification {"tokens": ["EU", "rejects", ...]}     (or a string, split on spaces)
  question answering   {"question": "...", "context": "..."}
outputs: label and probabilities; entity spans; answer text and character span.

examples:
  ptuning predict --checkpoint outputs/sst2-p-tuning-v2 "a gripping, funny film" "dull and overlong"
  ptuning predict --checkpoint outputs/squad-p-tuning-v2 --input questions.jsonl --output answers.jsonl"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a folder written by ptuning train")
    parser.add_argument("--input", default=None, help="JSONL file of inputs")
    parser.add_argument("texts", nargs="*", help="texts to classify or tag (instead of --input)")
    parser.add_argument("--output", default=None, help="JSONL file to write (default: stdout)")
    parser.add_argument("--max-seq-length", type=int, default=256, help="(default: 256)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    add_bf16_argument(parser, answers=True)


def read_inputs(path: str) -> list:
    from ..data.spec import DataError

    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: no such file; expected a JSONL file with one input per line")
    inputs = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            inputs.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{number}: invalid JSON ({exc.msg}); expected one JSON input per line"
            ) from None
    if not inputs:
        raise DataError(f"{path}: the file is empty; expected one JSON input per line")
    return inputs


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import atomic_write_text
    from ..cli import UserError
    from ..inference import Predictor

    if bool(args.input) == bool(args.texts):
        raise UserError("give either --input FILE.jsonl or texts on the command line")
    inputs = read_inputs(args.input) if args.input else list(args.texts)
    predictor = Predictor.from_checkpoint(
        args.checkpoint, max_length=args.max_seq_length, batch_size=args.batch_size, bf16=args.bf16
    )
    results = predictor.predict(inputs)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if args.output:
        atomic_write_text(Path(args.output), lines)
        print(f"wrote {len(results)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0
