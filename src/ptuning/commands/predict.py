"""`ptuning predict`: predictions of a saved checkpoint, as JSON lines."""

from __future__ import annotations

import argparse
import json
import os
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
  .txt          one text per line (blank lines skipped)
  -             standard input: JSON lines, or one text per line
  other         token classification: CoNLL columns (token first; tag columns ignored)
A model trained on text pairs needs both texts of every input. An id (the `id` column or key where
present, or --id-column) is copied to each prediction. --output may not be the --input file.
outputs: label and probabilities; entity spans; answer text and character span. A progress bar
goes to stderr when it is a terminal.

The maximum sequence length is the one the checkpoint was trained with (older checkpoints: 256).

examples:
  ptuning predict --checkpoint outputs/sst2-p-tuning-v2 "a gripping, funny film" "dull and overlong"
  ptuning predict --checkpoint outputs/train-p-tuning-v2 --input test.csv --id-column review_id
  ptuning predict --checkpoint outputs/squad-p-tuning-v2 --input questions.jsonl --output answers.jsonl
  cat reviews.txt | ptuning predict --checkpoint outputs/sst2-p-tuning-v2 --input -"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a folder written by ptuning train")
    parser.add_argument(
        "--input", default=None, help="file of inputs (.csv, .tsv, .jsonl, .json, .txt, CoNLL; - for stdin)"
    )
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


def _same_file(first: str, second: str) -> bool:
    """True when both names reach one file (the same path spelled otherwise, a link, a hard link)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return Path(first).resolve() == Path(second).resolve()


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..checkpoint import Checkpoint, atomic_write_text
    from ..data.inputs import STDIN, parse_input, read_prediction_inputs
    from ..errors import CheckpointError, UserError
    from ..inference import Predictor

    if bool(args.input) == bool(args.texts):
        raise UserError("give either --input FILE or texts on the command line")
    if args.input and args.output and args.input != STDIN and _same_file(args.input, args.output):
        raise UserError(
            f"--output {args.output} is the --input file {args.input}: writing it would destroy the "
            "inputs; give another --output"
        )
    checkpoint = Checkpoint.read(args.checkpoint)  # read and checked once, for every step below
    overrides = {
        name: getattr(args, name)
        for name in ("text_column", "text_pair_column")
        if getattr(args, name) is not None
    }
    fmt = replace(checkpoint.inputs, **overrides)
    predictor = Predictor.from_checkpoint(
        checkpoint,
        max_length=args.max_seq_length,
        batch_size=args.batch_size,
        bf16=args.bf16,
    )
    if args.input:
        read = read_prediction_inputs(args.input, predictor.spec, fmt, id_column=args.id_column)
        inputs, ids = read.items, read.ids if read.has_ids else None
    else:
        inputs, ids = list(args.texts), None
        for index, text in enumerate(inputs):  # every input is checked before any is computed
            parse_input(predictor.spec, text, index, fmt)
    results = _predict(predictor, inputs, args.batch_size, progress=bool(args.input) and sys.stderr.isatty())
    if ids is not None:
        results = [{"id": key, **result} for key, result in zip(ids, results, strict=True)]
    try:  # a NaN is not JSON: never write one
        lines = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in results)
    except ValueError:
        raise CheckpointError(
            f"checkpoint {checkpoint}: a prediction is not a finite number (NaN or infinity); "
            "expected finite scores (its weights overflow the forward pass)"
        ) from None
    if args.output:
        atomic_write_text(Path(args.output), lines)
        print(f"wrote {len(results)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0


def _predict(predictor, inputs: list, batch_size: int, *, progress: bool) -> list[dict]:
    """The predictions of `inputs`, a batch at a time, with one progress bar on stderr if asked."""
    from tqdm import tqdm

    results: list[dict] = []
    step = max(1, batch_size)
    with tqdm(total=len(inputs), unit="input", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(inputs), step):
            chunk = inputs[start : start + step]
            results.extend(predictor.predict(chunk))
            bar.update(len(chunk))
    return results
