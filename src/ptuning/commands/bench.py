"""`ptuning bench`: step time, memory, size and inference latency of each method, side by side."""

from __future__ import annotations

import argparse

from .options import add_bf16_argument

DESCRIPTION = """Measure, for one backbone, batch size and sequence length, every method in its own process:
median training step time after warm-up, peak memory (CPU: resident set size; CUDA: allocated),
trainable parameters, checkpoint bytes, and inference latency with and without the prompt. Prints a
table with ratios against fine-tuning measured in the same run and writes them as JSON.

Methods: fine-tune, p-tuning-v2, p-tuning-v2+reparam, prefix-tuning, prompt-tuning, and PEFT's
prefix and prompt tuning on the same backbone (where PEFT fails, its error is the result).
On a GPU the same command measures there (CUDA). bf16 autocast: see --bf16.

examples:
  ptuning bench --quick                          # under a minute on 2 CPU cores
  ptuning bench --repeats 3 --output bench/results/minilm-b16-t128.json
  ptuning bench --methods fine-tune p-tuning-v2 --seq-len 256"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..bench import ALL_METHODS, QUICK

    parser.add_argument("--backbone", default="minilm", help="(default: minilm)")
    parser.add_argument("--batch-size", type=int, default=16, help="(default: 16)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per example (default: 128)")
    parser.add_argument("--prefix-len", type=int, default=20, help="prompt length P (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps (default: 3)")
    parser.add_argument("--steps", type=int, default=10, help="measured steps (default: 10)")
    parser.add_argument("--infer-reps", type=int, default=10, help="inference repetitions (default: 10)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="run every method this many times, round-robin (default: 1)"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=ALL_METHODS, default=list(ALL_METHODS), help="(default: all)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_bf16_argument(parser)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small and short: {', '.join(f'{k}={v}' for k, v in QUICK.items())} (under a minute on 2 cores)",
    )
    parser.add_argument("--output", default="bench/results/latest.json", help="JSON file to write")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..bench import QUICK, BenchConfig, format_table, run_bench

    cfg = BenchConfig(
        backbone=args.backbone,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        prefix_len=args.prefix_len,
        warmup=args.warmup,
        steps=args.steps,
        infer_reps=args.infer_reps,
        repeats=args.repeats,
        methods=tuple(args.methods),
        device=args.device,
        threads=args.threads,
        bf16=args.bf16,
    )
    if args.quick:
        for key, value in QUICK.items():
            setattr(cfg, key, value)
    if "fine-tune" not in cfg.methods:
        print("note: fine-tune is not among --methods, so no ratios are computed")
    result = run_bench(cfg, log=lambda message: print(message, flush=True))
    print()
    print(format_table(result))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {output}")
    return 0
