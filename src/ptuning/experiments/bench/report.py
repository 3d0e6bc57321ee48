"""`ptuning bench`'s results: medians over repeats, ratios against fine-tuning, targets, the table."""

from __future__ import annotations

import statistics
from typing import Any

from .config import BACKBONE_TARGETS, PRECISION_TARGETS, TARGETS

NUMERIC = ("step_ms", "peak_mb", "base_mb", "train_mb", "infer_ms", "infer_plain_ms", "infer_ratio")


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repeats of each numeric field; the first error if no repeat succeeded."""
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return runs[0]
    row = dict(ok[0])
    for key in NUMERIC:
        row[key] = statistics.median(r[key] for r in ok)
    row["repeats"] = len(ok)
    row["step_ms_by_repeat"] = [round(r["step_ms"], 2) for r in ok]
    row.pop("step_ms_all", None)
    return row


def ratios(rows: dict[str, dict[str, Any]], per_repeat: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each method against fine-tuning measured in the same run.

    The step-time ratio is the median over repeats of the per-repeat ratio (both measured back to
    back), which cancels slow drifts of a shared machine better than a ratio of medians."""
    ft = rows.get("fine-tune")
    if not ft or ft.get("status") != "ok":
        return {}
    out = {}
    for name, row in rows.items():
        if row.get("status") != "ok":
            continue
        pairs = [
            a["step_ms"] / b["step_ms"]
            for a, b in zip(per_repeat[name], per_repeat["fine-tune"], strict=False)
            if a.get("status") == "ok" and b.get("status") == "ok"
        ]
        out[name] = {
            "step_time": statistics.median(pairs) if pairs else row["step_ms"] / ft["step_ms"],
            "peak_memory": row["peak_mb"] / ft["peak_mb"],
            "train_memory": row["train_mb"] / ft["train_mb"] if ft["train_mb"] > 0 else None,
            "trainable_params": row["trainable_params"] / ft["trainable_params"],
            "checkpoint_bytes": row["checkpoint_bytes"] / ft["checkpoint_bytes"],
            "inference_prefix_overhead": row["infer_ratio"],
        }
    return out


def check_targets(
    ratio_table: dict[str, Any], backbone: str = "minilm", dtype: str = "fp32"
) -> dict[str, Any]:
    """Each target met or not; `dtype` is the precision's name ("fp32", "bf16 autocast")."""
    out = {}
    limits = {**TARGETS, **PRECISION_TARGETS.get(dtype, {}), **BACKBONE_TARGETS.get(backbone, {})}
    for key, (method, limit) in limits.items():
        value = ratio_table.get(method, {}).get(key)
        out[key] = {
            "method": method,
            "limit": limit,
            "value": value,
            "met": None if value is None else value <= limit,
        }
    return out


def format_table(result: dict[str, Any]) -> str:
    cfg = result["config"]
    env = result["environment"]
    ratio_table = result["ratios_vs_fine_tune"]
    head = (
        f"backbone {cfg['backbone']}, batch {cfg['batch_size']}, {cfg['seq_len']} tokens, P = {cfg['prefix_len']}, "
        f"{env['device']} ({env['dtype']}), {cfg['repeats']} repeat(s), {cfg['steps']} steps after "
        f"{cfg['warmup']} warm-up"
    )
    lines = [head, ""]
    header = (
        "| method | step ms | x FT | peak MB | x FT | train MB | trainable | ckpt bytes | "
        "infer ms | plain ms | infer ratio |"
    )
    lines += [header, "|---" * 11 + "|"]
    for row in result["rows"]:
        name = row["method"]
        if row.get("status") != "ok":
            lines.append(f"| {name} | error: {row['error'][:120]} |" + " |" * 9)
            continue
        r = ratio_table.get(name, {})
        lines.append(
            f"| {name} | {row['step_ms']:.0f} | {r.get('step_time', float('nan')):.2f} | {row['peak_mb']:.0f} | "
            f"{r.get('peak_memory', float('nan')):.2f} | {row['train_mb']:.0f} | {row['trainable_params']:,} | "
            f"{row['checkpoint_bytes']:,} | {row['infer_ms']:.1f} | {row['infer_plain_ms']:.1f} | "
            f"{row['infer_ratio']:.3f} |"
        )
    lines.append("")
    for key, t in result["targets"].items():
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"target {key} ({t['method']}) <= {t['limit']}: {value} -> {verdict}")
    return "\n".join(lines)
