"""Cost curves: how fine-tuning's and p-tuning-v2's step time and peak memory grow with the shape.

`ptuning bench --sweep` varies one factor at a time around a base shape (the command's --seq-len,
--prefix-len and --batch-size): sequence length T, prompt length P, batch size B. Each point runs
in its own worker process (`driver.run_worker`), fine-tune once per (T, B) since it has no prompt,
p-tuning-v2 at every point, one right after the other so that drifts of the machine hit both.

Per layer the linear products cost ~24·B·T·H² flops forward and the attention ~4·B·T·(T+P)·H, so
the prefix adds 4·B·T·P·H: an inference overhead of about P / (6H + T) over the plain backbone, which
grows with P and, for long texts, shrinks with T. A training step of a frozen backbone skips the
weight gradients (a third of fine-tuning's products) and the optimizer over its weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...methods import get_method
from .config import BenchConfig
from .driver import environment, run_worker

SEQ_LENS = (64, 128, 256, 512)
PREFIX_LENS = (8, 32, 128)
BATCH_SIZES = (8, 32)
METHODS = ("fine-tune", "p-tuning-v2")


def sweep_points(base: BenchConfig) -> list[dict[str, Any]]:
    """(factor, seq_len, prefix_len, batch_size) of each point, one factor varied at a time."""
    points = [{"factor": "seq_len", "seq_len": t} for t in SEQ_LENS]
    points += [{"factor": "prefix_len", "prefix_len": p} for p in PREFIX_LENS]
    points += [{"factor": "batch_size", "batch_size": b} for b in BATCH_SIZES]
    shape = {"seq_len": base.seq_len, "prefix_len": base.prefix_len, "batch_size": base.batch_size}
    return [{**shape, **point} for point in points]


def _key(method: str, point: dict[str, Any]) -> tuple:
    prompt = point["prefix_len"] if get_method(method).has_prompt else None  # e.g. fine-tune: none
    return method, point["seq_len"], point["batch_size"], prompt


def run_sweep(base: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every point (each (method, shape) once, shared by the factors that meet there)."""
    measured: dict[tuple, dict[str, Any]] = {}
    points = sweep_points(base)
    for i, point in enumerate(points, 1):
        cfg = dataclasses.replace(
            base,
            seq_len=point["seq_len"],
            prefix_len=point["prefix_len"],
            batch_size=point["batch_size"],
            methods=METHODS,
            repeats=1,
        )
        for method in METHODS:
            key = _key(method, point)
            if key not in measured:
                measured[key] = run_worker(cfg, method)
                row = measured[key]
                shape = f"T={point['seq_len']} P={point['prefix_len']} B={point['batch_size']}"
                if row.get("status") == "ok":
                    log(
                        f"[{i}/{len(points)}] {shape} {method}: step {row['step_ms']:.0f} ms, peak {row['peak_mb']:.0f} MB"
                    )
                else:
                    log(f"[{i}/{len(points)}] {shape} {method}: {row.get('error', '')[:160]}")
    rows = []
    for point in points:
        ft, pt = (measured[_key(m, point)] for m in METHODS)
        row = {**point, "fine_tune": _figures(ft), "p_tuning_v2": _figures(pt)}
        if ft.get("status") == "ok" and pt.get("status") == "ok":
            row["step_ratio"] = pt["step_ms"] / ft["step_ms"]
            row["memory_ratio"] = pt["peak_mb"] / ft["peak_mb"]
            row["inference_ratio"] = pt["infer_ratio"]
        rows.append(row)
    return {"config": dataclasses.asdict(base), "environment": environment(base), "points": rows}


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("status") != "ok":
        return {"status": "error", "error": row.get("error", "")}
    keys = ("step_ms", "peak_mb", "train_mb", "infer_ms", "infer_plain_ms", "infer_ratio")
    return {"status": "ok", **{k: row[k] for k in keys}}


def format_sweep(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"backbone {result['config']['backbone']}, {env['device']} ({env['dtype']}); one factor varied at a time",
        "",
        "| factor | T | P | B | FT step ms | PT-2 step ms | step x FT | FT peak MB | PT-2 peak MB | memory x FT | "
        "infer x plain |",
        "|---" * 11 + "|",
    ]
    for row in result["points"]:
        ft, pt = row["fine_tune"], row["p_tuning_v2"]
        if "step_ratio" not in row:
            lines.append(
                f"| {row['factor']} | {row['seq_len']} | {row['prefix_len']} | {row['batch_size']} | error |"
            )
            continue
        lines.append(
            f"| {row['factor']} | {row['seq_len']} | {row['prefix_len']} | {row['batch_size']} | "
            f"{ft['step_ms']:.0f} | {pt['step_ms']:.0f} | {row['step_ratio']:.2f} | {ft['peak_mb']:.0f} | "
            f"{pt['peak_mb']:.0f} | {row['memory_ratio']:.2f} | {row['inference_ratio']:.3f} |"
        )
    return "\n".join(lines)


def plot_sweep(result: dict[str, Any], path: Path) -> Path:
    """One column per factor: step time (top) and peak memory (bottom) of both methods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = ("seq_len", "prefix_len", "batch_size")
    titles = {"seq_len": "sequence length T", "prefix_len": "prompt length P", "batch_size": "batch size B"}
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), squeeze=False)
    for col, factor in enumerate(factors):
        rows = [r for r in result["points"] if r["factor"] == factor and "step_ratio" in r]
        xs = [r[factor] for r in rows]
        for row_index, (figure, unit) in enumerate(
            (("step_ms", "step (ms)"), ("peak_mb", "peak memory (MB)"))
        ):
            ax = axes[row_index][col]
            for method, label in (("fine_tune", "fine-tune"), ("p_tuning_v2", "p-tuning-v2")):
                ax.plot(xs, [r[method][figure] for r in rows], marker="o", label=label)
            ratio_key = "step_ratio" if figure == "step_ms" else "memory_ratio"
            for x, r in zip(xs, rows, strict=True):
                ax.annotate(f"{r[ratio_key]:.2f}x", (x, r["p_tuning_v2"][figure]), fontsize=7,
                            textcoords="offset points", xytext=(0, -11), ha="center")  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(titles[factor])
            ax.set_ylabel(unit)
            ax.grid(alpha=0.3)
            if row_index == 0 and col == 0:
                ax.legend()
    env = result["environment"]
    fig.suptitle(
        f"{result['config']['backbone']} on {env['device']} ({env['dtype']}): cost against shape "
        "(labels: p-tuning-v2 / fine-tune)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
