"""`ptuning export`: a checkpoint in another library's format (PEFT adapters)."""

from __future__ import annotations

import argparse

FORMATS = ("peft",)

DESCRIPTION = """Write a checkpoint in another library's format.

--format peft: a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) that
peft.PeftModel.from_pretrained loads: P-Tuning v2 / prefix tuning as PREFIX_TUNING (every layer
prompted; the table folded), prompt tuning as PROMPT_TUNING. Token classification and QA heads go
into the adapter (modules_to_save: classifier, qa_outputs); sequence-level heads have no place in
the Hugging Face task models' layout and go to ptuning_head.safetensors beside it (the adapter is
then a FEATURE_EXTRACTION one, for AutoModel). ptuning_task.json lets `ptuning import-peft` bring
the folder back as it was. See docs/interop.md.

examples:
  ptuning export --format peft outputs/conll03-p-tuning-v2 peft/conll03
  ptuning import-peft peft/conll03 outputs/conll03-p-tuning-v2"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, required=True, help="what to write: peft")
    parser.add_argument("checkpoint", help="a checkpoint folder written by ptuning train")
    parser.add_argument("out", help="the folder to write")
    parser.add_argument(
        "--backbone", default=None, help="the backbone to load the checkpoint on (default: the one it names)"
    )


def run(args: argparse.Namespace) -> int:
    from ..interop.peft import export_peft

    done = export_peft(args.checkpoint, args.out, backbone=args.backbone)
    head = "in the adapter" if done.head == "adapter" else f"in {done.head}"
    print(f"wrote {done.folder}: {done.peft_type} adapter, task type {done.task_type}, head {head}")
    print(f"files: {', '.join(done.files)}")
    return 0
