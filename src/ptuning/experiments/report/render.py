"""Rendering a protocol's results to ``report.md``, ``results.json`` and the plots."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...core.config import METHODS, default_learning_rate
from ...methods import get_method
from .aggregate import _mean_std, aggregate, latest_ok
from .cells import BASELINE, cells, kept_levers, lever_cells
from .convergence import convergence_check, convergence_lines, convergence_summary
from .gaps import _gap_table, _verdicts
from .plots import _plot_learning_curves, _plot_params, _plot_sweep
from .protocols import (
    LEARNT_ABOVE,
    METRIC_TITLES,
    PAPER_FIGURES,
    PAPER_NOTE,
    SENTENCE_TASKS,
    TASK_TITLES,
    Protocol,
    TaskSetting,
)
from .run import final_settings, read_results
from .study import (
    DRY,
    STUDIES,
    describe_search,
    importance_lines,
    scale_lines,
    settings_lines,
    verdict_lines,
)
from .variants import variant_lines, variant_verdicts


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "—"
    if entry["n"] > 1:
        return f"{entry['mean']:.1f} ± {entry['std']:.1f} (n={entry['n']})"
    return f"{entry['mean']:.1f} (n=1)"


def _learning_rate(
    ok: dict[str, dict[str, Any]], setting: TaskSetting, method: str, tuned: dict[str, Any]
) -> str:
    """The learning rate the runs used (from their rows), else what the protocol would use: the
    tuned one where a study picked it, the task's or the method's default otherwise."""
    used = sorted(
        {
            r["learning_rate"]
            for r in ok.values()
            if r["task"] == setting.task and r["method"] == method and r.get("learning_rate")
        }
    )
    if used:
        return "/".join(f"{lr:g}" for lr in used)
    if "learning_rate" in tuned:
        return f"{tuned['learning_rate']:g}"
    default = default_learning_rate(method) if method in METHODS else float("nan")
    return f"{setting.learning_rates.get(method, default):g}"


def _tuning_table(
    protocol: Protocol,
    tuned: Mapping[tuple[str, str], dict[str, Any]],
    scores: Mapping[tuple[str, str], float] | None = None,
) -> list[str]:
    """Per task: the subset the trials used, and each method's best learning rate, prompt length and
    dev score; tasks no method learnt at the tuning size are named (their picks are noise)."""
    scores = scores or {}
    lines = [
        "| task | trial train / eval / epochs | prompt lengths searched | "
        + " | ".join(protocol.methods)
        + " |",
        "|---|---|---|" + "---|" * len(protocol.methods),
    ]
    for t in protocol.tasks:
        best = []
        for method in protocol.methods:
            values = tuned.get((t.task, method))
            if not values:
                best.append("not tuned yet")
                continue
            text = f"lr {values['learning_rate']:.3g}" if "learning_rate" in values else ""
            if get_method(method).has_prompt and "prefix_len" in values:
                text += f", P {values['prefix_len']}"
            if (t.task, method) in scores:
                text += f" (dev {scores[(t.task, method)]:.1f})"
            best.append(text)
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} | {t.tune_train_samples or 'all'} / "
            f"{t.tune_eval_samples or 'all'} / {t.tune_epochs or t.epochs:g} | "
            f"{', '.join(map(str, t.tune_prefix_lens)) or '—'} | " + " | ".join(best) + " |"
        )
    unlearnt = [
        t.task
        for t in protocol.tasks
        if t.task in LEARNT_ABOVE
        and all((t.task, m) in scores for m in protocol.methods)
        and max(scores[(t.task, m)] for m in protocol.methods) < LEARNT_ABOVE[t.task]
    ]
    if unlearnt:
        lines += [
            "",
            "No method learnt "
            + ", ".join(TASK_TITLES.get(task, task) for task in unlearnt)
            + " at the tuning size (every best trial below the 'learnt' line of the results section): "
            "there the trials could not tell the settings apart, and the pick is close to a random one "
            "from the space, for every method alike.",
        ]
    return lines + [""]


def _lever_lines(
    protocol: Protocol, ok: dict[str, dict[str, Any]], levers: dict[str, dict[str, Any]]
) -> list[str]:
    """The lever comparison: per task, the mean over seeds of the baseline and of each lever."""
    names = (BASELINE, *protocol.levers)
    lines = [
        "## Levers",
        "",
        f"Each lever against the baseline, {protocol.lever_method} with its tuned setting, at the tuning "
        f"size of each task (training subset, epochs), seeds {', '.join(map(str, protocol.lever_seeds))}; "
        "a lever joins the main cells only where its mean over tasks and seeds beats the baseline's. "
        + "; ".join(f"{name}: `{json.dumps(settings)}`" for name, settings in protocol.levers.items()),
        "",
        "| task | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    scores = {
        (task, name): [
            100 * r["score"] for r in ok.values() if r["kind"] == f"lever-{name}" and r["task"] == task
        ]
        for task in protocol.lever_tasks
        for name in names
    }
    for task in protocol.lever_tasks:
        cells_ = []
        for name in names:
            mean, std = _mean_std(scores[(task, name)])
            n = len(scores[(task, name)])
            cells_.append(f"{mean:.1f} ± {std:.1f} (n={n})" if n else "not run")
        lines.append(f"| {TASK_TITLES.get(task, task)} | " + " | ".join(cells_) + " |")
    lines.append("")
    for name, verdict in levers.items():
        state = "kept" if verdict["kept"] else "not kept"
        gain = (
            "no finished pair yet"
            if not verdict["n"]
            else f"{verdict['gain']:+.2f} points over {verdict['n']} pairs"
        )
        spread = max(
            (_mean_std(scores[(task, n)])[1] for task in protocol.lever_tasks for n in (BASELINE, name)),
            default=math.nan,
        )
        if verdict["n"] and abs(verdict["gain"]) < spread:
            gain += f", smaller than the seed spread of these cells (up to {spread:.1f}): not told apart from noise"
        lines.append(f"- {name}: {gain}: **{state}**.")
    return lines + [""]


def machine_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Which processor and precision trained the finished cells, with how many each (a study spans
    several runs, and not always the same machine); nothing where no row says."""
    counts = Counter(
        (row["processor"], row.get("precision") or "?")
        for row in rows
        if row.get("status") == "ok" and row.get("processor")
    )
    if not counts:
        return []
    unrecorded = sum(1 for row in rows if row.get("status") == "ok" and not row.get("processor"))
    parts = [
        f"{name}, {precision}: {n} cell{'s' * (n != 1)}" for (name, precision), n in sorted(counts.items())
    ]
    if unrecorded:
        parts.append(f"not recorded (earlier runs): {unrecorded}")
    return ["Trained on: " + "; ".join(parts) + ".", ""]


def render(protocol: Protocol, folder: Path, *, command: str = "", rendered_by: str = "") -> Path:
    """Write report.md, results.json and the PNGs from results.jsonl; returns report.md's path."""
    folder = Path(folder)
    rows = read_results(folder)
    ok = latest_ok(rows)
    sweep_task = protocol.sweep_task
    agg = aggregate(rows, sweep_task)
    table = agg["table"]
    sweep = agg["sweep_rows"]

    _plot_learning_curves(ok, protocol, folder / "learning_curves.png")
    _plot_params(table, protocol, folder / "metric_vs_params.png")
    if protocol.sweep_lengths:
        _plot_sweep(
            sweep, table.get(sweep_task, {}).get("fine-tune"), sweep_task, folder / "prompt_length.png"
        )

    from .tuning_budget import best_values, tuned_settings
    from .tuning_budget import describe as describe_tuning

    tuned = tuned_settings(protocol, folder)
    expected = lever_cells(protocol, tuned=tuned) + cells(protocol, tuned=tuned)
    levers = kept_levers(protocol, rows)
    missing = [c.key for c in expected if c.key not in ok]
    checks = convergence_check(protocol, ok)
    variants = variant_verdicts(protocol, ok)
    raw = {
        "protocol": asdict(protocol),
        "command": command,
        "cells": list(ok.values()),
        "failed": agg["failed"],
        "missing": missing,
        "table": table,
        "sweep": sweep,
        "paper": PAPER_FIGURES,
        "tuned": {f"{task}/{method}": values for (task, method), values in tuned.items()},
        "levers": levers,
        "final_settings": final_settings(protocol, rows),
        "convergence": convergence_summary(checks),
        "variants": variants,
    }
    (folder / "results.json").write_text(json.dumps(raw, indent=2, default=str) + "\n")

    lines = [f"# P-Tuning v2 reproduction report ({protocol.name} protocol)", ""]
    if command:
        lines += ["Made by:", "", "```", command, "```", ""]
    if rendered_by and rendered_by != command:
        lines += [f"(rendered again from `results.jsonl` by `{rendered_by}`)", ""]
    lines += [protocol.description, ""]
    if protocol.tune_trials and protocol.tune_spaces:
        lines += ["## Tuning", "", describe_search(protocol), ""]
        lines += settings_lines(protocol, tuned, best_values(protocol, folder), folder=folder)
        lines += importance_lines(protocol, folder)
    elif protocol.tune_trials:
        lines += ["## Tuning", "", describe_tuning(protocol), ""]
        lines += _tuning_table(protocol, tuned, best_values(protocol, folder))
    elif protocol.settings_from:
        source = folder.parent / protocol.settings_from
        lines += settings_lines(protocol, tuned, {}, source=f"`{source}`, no search here")
    if protocol.levers:
        lines += _lever_lines(protocol, ok, levers)
    lines += [
        f"Backbone: `{protocol.backbone}`"
        + (
            " — all-MiniLM-L6-v2, a 22M-parameter sentence-embedding model (6 layers, 384 hidden), "
            "not an MLM checkpoint. "
            if protocol.backbone == "minilm"
            else ". "
        )
        + (
            "Prompt lengths: each method's tuned one per task (see Tuning)."
            if protocol.tune_trials or protocol.settings_from
            else f"Prompt length P = {protocol.prefix_len} for the prompt methods."
        ),
        "",
        "| task | train | eval | max len | epochs | batch | pooling | learning rates | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in protocol.tasks:
        lrs = ", ".join(
            f"{m} {_learning_rate(ok, t, m, tuned.get((t.task, m), {}))}" for m in protocol.methods
        )
        pooling = t.pooling if t.task in SENTENCE_TASKS else "per token"
        epochs = f"auto, at most {t.epochs:g}" if protocol.epochs_auto else f"{t.epochs:g}"
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} | {t.max_train_samples or 'all'} | {t.max_eval_samples or 'all'} "
            f"| {t.max_seq_length} | {epochs} | {t.batch_size} | {pooling} | {lrs} | "
            f"{', '.join(map(str, t.seeds))} |"
        )
    lines += [
        "",
        "Subsets are drawn with each run's seed (training and, where capped, evaluation subsets), so "
        "the spread over seeds includes the choice of examples. SQuAD: the offline copy has only the "
        "dev file, which the data module splits by article (every 5th article is validation). "
        + (
            protocol.selection
            if protocol.selection
            else "The best epoch's dev score is reported (the Trainer keeps the best checkpoint), as the "
            "paper does."
        ),
        "",
        "## Results (dev, x100, mean ± standard deviation over seeds)",
        "",
        "| task (metric) | "
        + " | ".join(protocol.methods)
        + " | PT-2 − FT |"
        + "".join(f" {m} (zero-shot) |" for m in protocol.zero_shot_methods),
        "|---|" + "---|" * (len(protocol.methods) + 1 + len(protocol.zero_shot_methods)),
    ]
    for t in protocol.tasks:
        row = table.get(t.task, {})
        gap = "—"
        if "p-tuning-v2" in row and "fine-tune" in row:
            gap = f"{row['p-tuning-v2']['mean'] - row['fine-tune']['mean']:+.1f}"
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} ({METRIC_TITLES.get(t.task, '')}) | "
            + " | ".join(_fmt(row.get(m)) for m in protocol.methods)
            + f" | {gap} |"
            + "".join(f" {_fmt(row.get(m))} |" for m in protocol.zero_shot_methods)
        )
    if protocol.zero_shot_methods:
        lines += [
            "",
            "Zero-shot columns: a handcrafted template and verbalizer (the task's default, "
            "`ptuning.handcrafted.DEFAULT_PROMPTS`), no training example, no trainable parameter, on the "
            "same evaluation examples; one run (deterministic). On this backbone, which has no "
            "masked-LM head, label words are scored by embedding similarity (see README).",
        ]
    lines += ["", "Trainable parameters and mean training seconds per run (this machine):", ""]
    lines += ["| task | " + " | ".join(protocol.methods) + " |", "|---|" + "---|" * len(protocol.methods)]
    for t in protocol.tasks:
        row = table.get(t.task, {})
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} | "
            + " | ".join(
                f"{row[m]['trainable_params']:,} / {row[m]['train_seconds']:.0f} s" if m in row else "—"
                for m in protocol.methods
            )
            + " |"
        )
    lines += ["", "## The paper's figures, for context", "", PAPER_NOTE, ""]
    lines += [
        "| task | backbone | fine-tune | prompt-tuning | p-tuning-v2 | ours: FT / PT / PT-2 |",
        "|---|---|---|---|---|---|",
    ]
    for task in ("rte", "conll03", "squad"):
        ours = table.get(task, {})
        mine = " / ".join(
            f"{ours[m]['mean']:.1f}" if m in ours else "—"
            for m in ("fine-tune", "prompt-tuning", "p-tuning-v2")
        )
        for backbone, figures in PAPER_FIGURES.items():
            f = figures.get(task, {})
            lines.append(
                f"| {TASK_TITLES[task]} | {backbone} (paper, different backbone) | "
                + " | ".join(
                    f"{f.get(m):.1f}" if f.get(m) is not None else "—"
                    for m in ("fine-tune", "prompt-tuning", "p-tuning-v2")
                )
                + f" | {mine} |"
            )
    lines += ["", "## Does the claim hold here?", ""]
    lines += _gap_table(table, protocol)
    lines += _verdicts(table, protocol)
    if protocol.validation_split:
        lines += [""] + verdict_lines(table, protocol)
    lines += [""] + convergence_lines(protocol, checks)
    lines += variant_lines(protocol, variants)
    lines += [
        "",
        "## Plots",
        "",
        "![learning curves](learning_curves.png)",
        "",
        (
            "Metric on the held-out split after each epoch (the selection curve; mean over seeds)."
            if protocol.validation_split
            else "Dev metric after each epoch (mean over seeds); dashed: the convergence check's longer "
            "run (one seed), where the protocol has one."
        ),
        "",
        "![metric against trainable parameters](metric_vs_params.png)",
        "",
        "Dev metric (mean ± std over seeds) against trainable parameters (head included).",
        "",
    ]
    if protocol.validation_split and protocol.name.removesuffix(DRY) in STUDIES:
        lines += scale_lines(protocol, folder)
    if protocol.sweep_lengths:
        lines += [
            "![prompt-length sweep](prompt_length.png)",
            "",
            f"P-Tuning v2 on {TASK_TITLES.get(sweep_task, sweep_task)} with P in "
            f"{', '.join(map(str, protocol.sweep_lengths))} (first seed only), fine-tuning's mean as a line.",
            "",
        ]
    if sweep and protocol.sweep_lengths:
        lines += ["| P | trainable params | dev x100 |", "|---|---|---|"]
        lines += [f"| {s['prefix_len']} | {s['trainable_params']:,} | {s['score']:.1f} |" for s in sweep]
        lines.append("")
    if agg["failed"] or missing:
        lines += ["## Missing or failed cells", ""]
        lines += [f"- failed: `{r['key']}`: {r['error']}" for r in agg["failed"]]
        lines += [f"- not run: `{key}`" for key in missing if key not in {r["key"] for r in agg["failed"]}]
        lines.append("")
    lines += machine_lines(rows)
    lines += [
        "Raw per-run results (learning curves included): `results.jsonl`; aggregates: `results.json`.",
        "",
    ]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path
