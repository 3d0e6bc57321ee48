"""`ptuning bench`: step time, memory, size and inference latency of each method, side by side."""

from __future__ import annotations

import argparse

from .options import add_bf16_argument

DESCRIPTION = """Measure, for one backbone, batch size and sequence length, every method in its own process:
median training step time after warm-up, peak memory (CPU: resident set size; CUDA: allocated),
trainable parameters, checkpoint bytes, and inference latency with and without the prompt. Prints a
table with ratios against fine-tuning measured in the same run and writes them as JSON.

Methods: fine-tune, p-tuning-v2, p-tuning-v2+reparam, p-tuning-v2+checkpointing (the layers'
activations recomputed in the backward pass, as `train --activation-checkpointing`),
p-tuning-v2+batch-dropout (one prompt-dropout mask per batch, not per example), prefix-tuning,
prompt-tuning, and PEFT's prefix and prompt tuning on the same backbone (where PEFT fails, its
error is the result).
On a GPU the same command measures there (CUDA). bf16 autocast: see --bf16.

examples:
  ptuning bench --quick                          # under a minute on 2 CPU cores
  ptuning bench --repeats 3 --output bench/results/minilm-b16-t128.json
  ptuning bench --methods fine-tune p-tuning-v2 --seq-len 256
  ptuning bench --sweep --warmup 1 --steps 3 --infer-reps 3 --batch-size 8 --prefix-len 32 \
      --output bench/results/sweep-minilm-fp32.json   # cost curves: JSON, table and a PNG beside it

--sweep varies one factor at a time around --seq-len, --prefix-len and --batch-size (T in 64, 128,
256, 512; P in 8, 32, 128; B in 8, 32) and measures fine-tune and p-tuning-v2 at every point."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..experiments.bench import ALL_METHODS, QUICK

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
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="cost curves over sequence length, prompt length and batch size (fine-tune and p-tuning-v2); "
        "writes the JSON and a PNG plot beside it",
    )
    parser.add_argument("--output", default=None, help="JSON file to write (default: bench/results/latest.json, "
                        "with --sweep bench/results/sweep.json)")  # fmt: skip


def _log(message: str) -> None:
    print(message, flush=True)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..experiments.bench import QUICK, BenchConfig, format_table, run_bench

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
    if args.sweep:
        from ..experiments.bench.sweep import format_sweep, plot_sweep, run_sweep

        output = Path(args.output or "bench/results/sweep.json")
        result = run_sweep(cfg, log=_log)
        table = format_sweep(result)
        plot = plot_sweep(result, output.with_suffix(".png"))
    else:
        if "fine-tune" not in cfg.methods:
            print("note: fine-tune is not among --methods, so no ratios are computed")
        output = Path(args.output or "bench/results/latest.json")
        result = run_bench(cfg, log=_log)
        table, plot = format_table(result), None
    print()
    print(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {output}" + (f" and {plot}" if plot else ""))
    return 0
