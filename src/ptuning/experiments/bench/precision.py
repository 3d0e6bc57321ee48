"""bf16 autocast against fp32, interleaved step by step in one process: step time and inference latency.

For each method, one model is built on `ptuning bench`'s fixed random batch; then training steps
(forward, backward, AdamW step, zero_grad) alternate fp32 / bf16 / fp32 / ..., and so do eval-mode
forward passes. Alternating single steps in one process makes a shared machine's load changes hit
both precisions alike, so the bf16/fp32 ratio (median of the ratios of neighbouring steps) is
meaningful even where the absolute times are not. Both precisions update the same weights, which
does not change the cost of a step.

    python bench/bench_precision.py --methods fine-tune p-tuning-v2 --steps 10 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from ptuning.core.precision import Precision, cpu_supports_bf16
from ptuning.experiments.bench.config import METHOD_SPECS, BenchConfig
from ptuning.experiments.bench.worker import _build_ours


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)


def measure(cfg: BenchConfig, method: str, steps: int, infer_reps: int) -> dict:
    torch.manual_seed(cfg.seed)
    model, *_ = _build_ours(cfg, METHOD_SPECS[method][1])
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = {
        "input_ids": torch.randint(1000, 20000, (cfg.batch_size, cfg.seq_len), generator=gen),
        "attention_mask": torch.ones(cfg.batch_size, cfg.seq_len, dtype=torch.long),
        "labels": torch.randint(0, cfg.num_labels, (cfg.batch_size,), generator=gen),
    }
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    precisions = {"fp32": Precision("cpu", False, ""), "bf16": Precision("cpu", True, "")}

    def step(precision: Precision) -> None:
        with precision.autocast():
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    model.train()
    for name in precisions:  # warm-up, once each
        step(precisions[name])
    for _ in range(steps):
        for name, precision in precisions.items():
            times[name].append(_timed(lambda precision=precision: step(precision)))
    infer: dict[str, list[float]] = {"fp32": [], "bf16": []}
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        for name in precisions:
            with precisions[name].autocast():
                model(**inputs)
        for _ in range(infer_reps):
            for name, precision in precisions.items():
                with precision.autocast():
                    infer[name].append(_timed(lambda: model(**inputs)))
    return {
        "method": method,
        "fp32_step_ms": statistics.median(times["fp32"]),
        "bf16_step_ms": statistics.median(times["bf16"]),
        "step_ratio": statistics.median(b / a for a, b in zip(times["fp32"], times["bf16"], strict=True)),
        "fp32_infer_ms": statistics.median(infer["fp32"]),
        "bf16_infer_ms": statistics.median(infer["bf16"]),
        "infer_ratio": statistics.median(b / a for a, b in zip(infer["fp32"], infer["bf16"], strict=True)),
        "step_ms": {k: [round(t, 1) for t in v] for k, v in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--methods", nargs="+", default=["fine-tune", "p-tuning-v2"])
    for name, default in (
        ("batch-size", 16),
        ("seq-len", 128),
        ("prefix-len", 20),
        ("steps", 10),
        ("infer-reps", 5),
    ):
        parser.add_argument(f"--{name}", type=int, default=default, help=f"(default: {default})")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default="bench/results/precision.json")
    args = parser.parse_args(argv)
    if not cpu_supports_bf16():
        print("note: this CPU has no native bf16 (avx512_bf16/amx_bf16): bf16 is emulated here and slow")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = BenchConfig(
        backbone=args.backbone, batch_size=args.batch_size, seq_len=args.seq_len, prefix_len=args.prefix_len
    )
    load_start = os.getloadavg()
    rows = []
    print(
        "| method | fp32 step ms | bf16 step ms | bf16/fp32 step | fp32 infer ms | bf16 infer ms | bf16/fp32 infer |"
    )
    print("|---|---|---|---|---|---|---|", flush=True)
    for method in args.methods:
        r = measure(cfg, method, args.steps, args.infer_reps)
        rows.append(r)
        print(
            f"| {method} | {r['fp32_step_ms']:.0f} | {r['bf16_step_ms']:.0f} | {r['step_ratio']:.2f} | "
            f"{r['fp32_infer_ms']:.0f} | {r['bf16_infer_ms']:.0f} | {r['infer_ratio']:.2f} |",
            flush=True,
        )
    result = {
        "config": vars(args),
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "rows": rows,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload average {load_start} -> {result['loadavg_end']}; wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
