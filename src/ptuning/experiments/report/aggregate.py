"""Aggregation of the results: the latest successful row of each cell, means and spreads per task
and method."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any


def latest_ok(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last successful row of each cell key (a rerun supersedes an older line)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("status") == "ok":
            out[row["key"]] = row
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def aggregate(rows: list[dict[str, Any]], sweep_task: str | None = None) -> dict[str, Any]:
    """Mean and standard deviation over seeds (scores x100) per (task, method) of the main cells."""
    ok = latest_ok(rows)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in ok.values():
        if row["kind"] == "main":
            groups[(row["task"], row["method"])].append(row)
    table: dict[str, dict[str, Any]] = defaultdict(dict)
    for (task, method), group in groups.items():
        scores = [100 * r["score"] for r in group]
        mean, std = _mean_std(scores)
        table[task][method] = {
            "mean": mean,
            "std": std,
            "n": len(scores),
            "seeds": sorted(r["seed"] for r in group),
            "scores": scores,
            "trainable_params": group[0]["trainable_params"],
            "total_params": group[0]["total_params"],
            "train_seconds": statistics.fmean(r["train_seconds"] for r in group),
            "metric": group[0]["metric"],
        }
    sweep = []
    if sweep_task is not None:
        first_seed = min((r["seed"] for r in ok.values() if r["task"] == sweep_task), default=None)
        sweep = sorted(
            (
                {
                    "prefix_len": r["prefix_len"],
                    "score": 100 * r["score"],
                    "trainable_params": r["trainable_params"],
                }
                for r in ok.values()
                if r["method"] == "p-tuning-v2" and r["task"] == sweep_task and r["seed"] == first_seed
            ),
            key=lambda d: d["prefix_len"],
        )
    failed = [r for r in rows if r.get("status") == "error" and r["key"] not in ok]
    return {"table": {k: dict(v) for k, v in table.items()}, "sweep_rows": sweep, "failed": failed}
