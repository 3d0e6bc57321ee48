"""The report's PNG plots (learning curves, metric against trained parameters, prompt length)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .cells import LONGER
from .protocols import METRIC_TITLES, TASK_TITLES, Protocol


def _legend(axes) -> None:
    """One legend, on the first panel that has labelled lines (a task may have no results yet)."""
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
            return


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported late: only rendering needs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_learning_curves(ok: dict[str, dict[str, Any]], protocol: Protocol, path: Path) -> None:
    plt = _pyplot()
    tasks = [t.task for t in protocol.tasks]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in protocol.methods:
            curves = [
                r["curve"]
                for r in ok.values()
                if r["kind"] == "main" and r["task"] == task and r["method"] == method and r.get("curve")
            ]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            epochs = [curves[0][i]["epoch"] for i in range(length)]
            means = [100 * statistics.fmean(c[i]["metric"] for c in curves) for i in range(length)]
            ax.plot(epochs, means, marker="o", label=method)
        for r in ok.values():  # the convergence check: one seed, trained longer
            if r["kind"] == LONGER and r["task"] == task and r.get("curve"):
                points = [(c["epoch"], 100 * c["metric"]) for c in r["curve"]]
                ax.plot(
                    *zip(*points, strict=True),
                    linestyle="--",
                    label=f"{r['method']}, longer (seed {r['seed']})",
                )
                ax.legend(fontsize=7)  # the first panel's legend does not name this line
        ax.set_title(f"{TASK_TITLES.get(task, task)} (dev {METRIC_TITLES.get(task, '')})")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("dev metric x100 (mean over seeds)")
    _legend(axes[0])
    _save(plt, fig, path)


def _plot_params(table: dict[str, Any], protocol: Protocol, path: Path) -> None:
    plt = _pyplot()
    tasks = [t.task for t in protocol.tasks]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in protocol.methods:
            entry = table.get(task, {}).get(method)
            if not entry:
                continue
            ax.errorbar(
                entry["trainable_params"],
                entry["mean"],
                yerr=entry["std"],
                marker="o",
                capsize=3,
                label=method,
            )
        ax.set_xscale("log")
        ax.set_title(TASK_TITLES.get(task, task))
        ax.set_xlabel("trainable parameters (log)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("dev metric x100")
    _legend(axes[0])
    _save(plt, fig, path)


def _plot_sweep(sweep: list[dict[str, Any]], fine_tune: dict[str, Any] | None, task: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    if sweep:
        ax.plot(
            [s["prefix_len"] for s in sweep], [s["score"] for s in sweep], marker="o", label="p-tuning-v2"
        )
    if fine_tune:
        ax.axhline(fine_tune["mean"], color="gray", linestyle="--", label="fine-tune (mean)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prompt length P")
    ax.set_ylabel(f"{TASK_TITLES.get(task, task)} dev metric x100")
    ax.set_title("prompt-length sweep (one seed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(plt, fig, path)
