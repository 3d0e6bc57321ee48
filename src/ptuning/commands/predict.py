"""`ptuning predict`: predictions of a saved checkpoint, as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import add_bf16_argument

DESCRIPTION = """Predict with a checkpoint written by `ptuning train`. Inputs are texts on the command line or a
file (--input). Writes one JSON object per input to --output (default: stdout), in input order.

--input takes the format of the training files, by extension:
  .csv / .tsv   the text (and pair) columns the model was trained with (other columns ignored)
  .jsonl        one input per line: an object with the trained text (and pair) keys, or
                  classification       {"text": "...", "text_pair": "..."}   (or a plain JSON string)
                  multiple choice      {"context": "...", "choices": ["...", "..."]}
                  token classification {"tokens": ["EU", "rejects", ...]}     (or a string, split on spaces)
                  question answering   {"question": "...", "context": "..."}
  .json         question answering: SQuAD JSON (answers not needed)
  other         token classification: CoNLL columns (token first; tag columns ignored)
An id (the `id` column or key where present, or --id-column) is copied to each prediction.
outputs: label and probabilities; entity spans; answer text and character span.

The maximum sequence length is the one the checkpoint was trained with (older checkpoints: 256).

examples:
  ptuning predict --checkpoint outputs/sst2-p-tuning-v2 "a gripping, funny film" "dull and overlong"
  ptuning predict --checkpoint outputs/train-p-tuning-v2 --input test.csv --id-column review_id
  ptuning predict --checkpoint outputs/squad-p-tuning-v2 --input questions.jsonl --output answers.jsonl"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a folder written by ptuning train")
    parser.add_argument("--input", default=None, help="file of inputs (.csv, .tsv, .jsonl, .json, CoNLL)")
    parser.add_argument("texts", nargs="*", help="texts to classify or tag (instead of --input)")
    parser.add_argument("--output", default=None, help="JSONL file to write (default: stdout)")
    parser.add_argument(
        "--id-column",
        default=None,
        help='column or key of --input copied to each prediction as "id" (default: id, where present)',
    )
    parser.add_argument(
        "--text-column", default=None, help="text column of --input (default: the checkpoint's)"
    )
    parser.add_argument(
        "--text-pair-column", default=None, help="second text column of --input (default: the checkpoint's)"
    )
    parser.add_argument(
        "--max-seq-length", type=int, default=None, help="(default: the checkpoint's, else 256)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    add_bf16_argument(parser, answers=True)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..checkpoint import atomic_write_text, recorded_inputs
    from ..data.inputs import read_prediction_inputs
    from ..errors import UserError
    from ..inference import Predictor

    if bool(args.input) == bool(args.texts):
        raise UserError("give either --input FILE or texts on the command line")
    recorded, _ = recorded_inputs(args.checkpoint)
    overrides = {
        name: getattr(args, name)
        for name in ("text_column", "text_pair_column")
        if getattr(args, name) is not None
    }
    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        max_length=args.max_seq_length,
        batch_size=args.batch_size,
        bf16=args.bf16,
    )
    if args.input:
        read = read_prediction_inputs(
            args.input, predictor.spec, replace(recorded, **overrides), id_column=args.id_column
        )
        inputs, ids = read.items, read.ids if read.has_ids else None
    else:
        inputs, ids = list(args.texts), None
    results = predictor.predict(inputs)
    if ids is not None:
        results = [{"id": key, **result} for key, result in zip(ids, results, strict=True)]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if args.output:
        atomic_write_text(Path(args.output), lines)
        print(f"wrote {len(results)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0
