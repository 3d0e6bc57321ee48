"""`ptuning import-peft`: a PEFT prefix-tuning or prompt-tuning adapter as a ptuning checkpoint."""

from __future__ import annotations

import argparse

DESCRIPTION = """Bring a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) in as a
ptuning checkpoint: PREFIX_TUNING becomes a P-Tuning v2 prefix, PROMPT_TUNING an input prompt.
Heads come along where ptuning's head holds them: token classification (classifier) and QA
(qa_outputs), and every head of a folder written by `ptuning export --format peft`. A
sequence-classification adapter's head reads the task model's pooler, which ptuning's head has
not: import its prompt alone (--prompt-only) and train a head on it (ptuning train --init-from OUT).
Note: PEFT numbers the text's positions from P, ptuning from 0 (see docs/interop.md).

examples:
  ptuning import-peft peft/conll03 outputs/conll03-p-tuning-v2
  ptuning import-peft my-adapter outputs/ner-p-tuning-v2 --backbone minilm --labels O,B-PER,I-PER
  ptuning import-peft sst2-adapter outputs/sst2-p-tuning-v2 --prompt-only --labels negative,positive"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", help="a PEFT adapter folder")
    parser.add_argument("out", help="the checkpoint folder to write")
    parser.add_argument(
        "--backbone",
        default=None,
        help="the backbone (default: the adapter's base_model_name_or_path, or the one an export names)",
    )
    parser.add_argument(
        "--labels", default=None, help="comma-separated label names, in id order (default: LABEL_0, ...)"
    )
    parser.add_argument(
        "--prompt-only", action="store_true", help="import the prompt alone; the head is fresh"
    )


def run(args: argparse.Namespace) -> int:
    from ..interop.peft import import_peft

    labels = [name.strip() for name in args.labels.split(",")] if args.labels else None
    model = import_peft(
        args.adapter, args.out, backbone=args.backbone, labels=labels, prompt_only=args.prompt_only
    )
    head = "fresh head" if args.prompt_only else f"{model.spec.task_type} head"
    print(f"wrote {args.out}: {model.prompt_config.method}, P={model.prompt_config.prefix_len}, {head}")
    return 0
