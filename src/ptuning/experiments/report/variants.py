"""Levers measured against the tuned methods: each variant of a method's finished main cells
(`Protocol.variants` on `variant_methods`, the cells of `cells.variant_cells`) against those
cells, seed by seed.

A variant cell is the main cell (its task's tuned setting, prompt length and seed) with a few
settings changed. Its verdict: the mean of the paired differences (variant minus main, same
seed), kept only where it is positive and larger than the two sets' seed spreads combined, the
rule the claim's gaps are judged by (`gaps._gap`). A variant never changes the main cells: where
one is kept, the report says so and the defaults may follow; the study's cells stay as they ran.
Fine-tune may take a lever too (`--pair-encoding separate` is not a prompt's): the gap between the
methods is then also reported with the lever on both sides.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .aggregate import _mean_std
from .cells import VARIANT, variant_methods, variant_tasks
from .gaps import _gap
from .protocols import TASK_TITLES, Protocol


def variant_verdicts(protocol: Protocol, ok: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (variant, method, task): the main and variant scores by seed (x100), the paired gain, the
    spread and whether the variant is kept ("kept" is None until two seeds have both cells)."""

    def scores(kind: str, method: str, task: str) -> dict[int, float]:
        return {
            r["seed"]: 100 * r["score"]
            for r in ok.values()
            if r["kind"] == kind and r["task"] == task and r["method"] == method
        }

    out = []
    for name, changes in protocol.variants.items():
        for method in variant_methods(protocol):
            for task in variant_tasks(protocol):
                main, variant = scores("main", method, task), scores(VARIANT + name, method, task)
                paired = sorted(set(main) & set(variant))
                # over the same seeds, the mean of the paired differences is the difference of means
                gain, spread = _gap(_entry([variant[s] for s in paired]), _entry([main[s] for s in paired]))
                out.append(
                    {
                        "variant": name,
                        "changes": dict(changes),
                        "method": method,
                        "task": task,
                        "main": {s: main[s] for s in paired},
                        "with_variant": {s: variant[s] for s in paired},
                        "gain": gain,
                        "spread": math.nan if spread is None else spread,
                        "kept": None if len(paired) < 2 else bool(gain > 0 and gain > spread),
                    }
                )
    return out


def _entry(scores: list[float]) -> dict[str, Any]:
    """Scores as `gaps._gap` reads a method's results: mean, standard deviation, count."""
    mean, std = _mean_std(scores)
    return {"mean": mean, "std": std, "n": len(scores)}


def variant_lines(protocol: Protocol, verdicts: list[dict[str, Any]]) -> list[str]:
    """The levers' table: per variant, method and task, the main cells, the variant's, the gain and
    the verdict; then, where the lever method and fine-tune both ran a variant, the gap between them."""
    if not protocol.variants:
        return []
    lines = [
        "## Levers against the tuned methods",
        "",
        "Each lever is a method's main cell (its study's setting, the same seed, split and epochs) with "
        "the settings named changed, scored on the dev set once like the main cells. Gain: the mean of "
        "the paired differences (lever minus main, seed by seed). A lever is kept only where the gain "
        "beats the two sets' seed spreads combined; a lever never changes the main cells. "
        + "; ".join(f"{name}: `{json.dumps(changes)}`" for name, changes in protocol.variants.items())
        + ".",
        "",
        "| lever | method | task | main cells | with the lever | gain ± spread | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        task = TASK_TITLES.get(v["task"], v["task"])
        head = f"| {v['variant']} | {v['method']} | {task} |"
        if not v["main"]:
            lines.append(f"{head} — | — | — | not run yet |")
            continue
        main = ", ".join(f"{x:.1f}" for x in v["main"].values())
        with_variant = ", ".join(f"{x:.1f}" for x in v["with_variant"].values())
        if len(v["main"]) < 2:
            gain, verdict = f"{v['gain']:+.1f} (one seed)", "one seed: not judged"
        else:
            gain = f"{v['gain']:+.1f} ± {v['spread']:.1f}"
            verdict = (
                "**kept**" if v["kept"] else "not kept" + (" (inside the spread)" if v["gain"] > 0 else "")
            )
        lines.append(f"{head} {main} | {with_variant} | {gain} | {verdict} |")
    lines.append("")
    return lines + _gap_lines(protocol, verdicts)


def _gap_lines(protocol: Protocol, verdicts: list[dict[str, Any]]) -> list[str]:
    """With each lever on both sides: the lever method minus fine-tune, over the seeds both ran."""
    out = []
    by = {(v["variant"], v["method"], v["task"]): v["with_variant"] for v in verdicts}
    for name in protocol.variants:
        for task in variant_tasks(protocol):
            ours, theirs = by.get((name, protocol.lever_method, task)), by.get((name, "fine-tune", task))
            if ours is None or theirs is None or ours is theirs:  # the same cells: no gap to tell
                continue
            seeds = sorted(set(ours) & set(theirs))
            if not seeds:
                continue
            a, b = _entry([ours[s] for s in seeds])["mean"], _entry([theirs[s] for s in seeds])["mean"]
            out.append(
                f"- {TASK_TITLES.get(task, task)}, both with {name}: {protocol.lever_method} "
                f"{a:.1f} vs fine-tune {b:.1f} ({a - b:+.1f}, {len(seeds)} seed(s))."
            )
    return out + [""] if out else []
