"""bf16 autocast against fp32, interleaved in one run: step time and inference latency per method.

Runs `ptuning bench`'s worker (one fresh process per measurement) for each method in fp32 and in
bf16, alternating, `--repeats` times, and prints the bf16/fp32 ratio of each method's step time
and inference latency (median over rounds of the ratio within a round), plus the absolute numbers.

    python bench/bench_precision.py --methods fine-tune p-tuning-v2 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from ptuning.benchmark import BenchConfig, run_worker


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
        ("warmup", 3),
        ("steps", 10),
    ):
        parser.add_argument(f"--{name}", type=int, default=default, help=f"(default: {default})")
    parser.add_argument("--infer-reps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default="bench/results/precision.json")
    args = parser.parse_args(argv)

    base = BenchConfig(
        backbone=args.backbone, batch_size=args.batch_size, seq_len=args.seq_len, prefix_len=args.prefix_len,
        warmup=args.warmup, steps=args.steps, infer_reps=args.infer_reps, methods=tuple(args.methods),
        device="cpu", threads=args.threads,
    )  # fmt: skip
    configs = {"fp32": replace(base, bf16=False), "bf16": replace(base, bf16=True)}
    rounds = []
    load_start = os.getloadavg()
    for r in range(args.repeats):
        rows = {}
        for method in args.methods:
            for name, cfg in configs.items():
                row = run_worker(cfg, method)
                rows[(method, name)] = row
                shown = (
                    f"step {row['step_ms']:.0f} ms, infer {row['infer_ms']:.0f} ms"
                    if row.get("status") == "ok"
                    else row["error"][:160]
                )
                print(f"[{r + 1}/{args.repeats}] {method} {name}: {shown}", flush=True)
        rounds.append(rows)

    summary = {}
    print(
        "\n| method | fp32 step ms | bf16 step ms | bf16/fp32 step | fp32 infer ms | bf16 infer ms | bf16/fp32 infer |"
    )
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        ok = [
            rows
            for rows in rounds
            if rows[(method, "fp32")].get("status") == "ok" and rows[(method, "bf16")].get("status") == "ok"
        ]
        if not ok:
            print(f"| {method} | error: {rounds[0][(method, 'bf16')].get('error', '')[:100]} | | | | | |")
            continue

        fp32 = {
            key: [rows[(method, "fp32")][key] for rows in ok] for key in ("step_ms", "infer_ms", "peak_mb")
        }
        bf16 = {
            key: [rows[(method, "bf16")][key] for rows in ok] for key in ("step_ms", "infer_ms", "peak_mb")
        }
        summary[method] = {
            **{f"fp32_{key}": statistics.median(v) for key, v in fp32.items()},
            **{f"bf16_{key}": statistics.median(v) for key, v in bf16.items()},
            # the ratio within each round (back to back), then the median over rounds
            "step_ratio": statistics.median(
                b / a for a, b in zip(fp32["step_ms"], bf16["step_ms"], strict=True)
            ),
            "infer_ratio": statistics.median(
                b / a for a, b in zip(fp32["infer_ms"], bf16["infer_ms"], strict=True)
            ),
        }
        s = summary[method]
        print(
            f"| {method} | {s['fp32_step_ms']:.0f} | {s['bf16_step_ms']:.0f} | {s['step_ratio']:.2f} | "
            f"{s['fp32_infer_ms']:.0f} | {s['bf16_infer_ms']:.0f} | {s['infer_ratio']:.2f} |"
        )
    result = {
        "config": vars(args),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "summary": summary,
        "rounds": [{f"{m} {n}": row for (m, n), row in rows.items()} for rows in rounds],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload average {load_start} -> {result['loadavg_end']}; wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
