"""The convergence check: is the claim method trained to convergence at the protocol's epochs? Its
main cell against the same cell (same seed, settings and prompt length) trained longer, beside
fine-tuning's cell of that seed."""

from __future__ import annotations

from typing import Any

from .cells import LONGER, longer_epochs, setting_of
from .gaps import WITHIN_FT
from .protocols import TASK_TITLES, Protocol


def _main_row(ok: dict[str, dict[str, Any]], task: str, method: str, seed: int) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in ok.values()
            if r["kind"] == "main" and r["task"] == task and r["method"] == method and r["seed"] == seed
        ),
        None,
    )


def _describe(row: dict[str, Any] | None) -> str:
    """'84.7 (best epoch 5 of 5, still rising; train loss 0.052)' from a row's score and curve."""
    if row is None:
        return "—"
    text = f"{100 * row['score']:.1f}"
    curve = row.get("curve") or []
    if curve:
        best = max(range(len(curve)), key=lambda i: curve[i]["metric"])
        notes = [f"best epoch {curve[best]['epoch']:g} of {curve[-1]['epoch']:g}"]
        if best == len(curve) - 1 and len(curve) > 1:
            notes[0] += ", still rising"
        if curve[-1].get("train_loss") is not None:
            notes.append(f"train loss {curve[-1]['train_loss']:.3f}")
        text += f" ({'; '.join(notes)})"
    return text


def convergence_check(protocol: Protocol, ok: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task of the check: the longer cell's score against the main cell's and fine-tuning's (same
    seed), x100; None where a cell has not finished."""
    out = []
    for task in protocol.longer_tasks:
        setting = setting_of(protocol, task)
        seed = setting.seeds[0]
        longer = next((r for r in ok.values() if r["kind"] == LONGER and r["task"] == task), None)
        main = _main_row(ok, task, protocol.lever_method, seed)
        ft = _main_row(ok, task, "fine-tune", seed)
        out.append(
            {
                "task": task,
                "seed": seed,
                "epochs": setting.epochs,
                "longer_epochs": longer_epochs(protocol, task),
                "main": main,
                "longer": longer,
                "fine_tune": ft,
            }
        )
    return out


def convergence_summary(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`convergence_check`'s result for results.json: cell keys and scores (x100), not whole rows."""

    def brief(row: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if row is None else {"key": row["key"], "score": 100 * row["score"]}

    return [{**check, **{k: brief(check[k]) for k in ("main", "longer", "fine_tune")}} for check in checks]


def convergence_lines(protocol: Protocol, checks: list[dict[str, Any]]) -> list[str]:
    """The report's section from `convergence_check`'s result: a table and one verdict per task."""
    if not protocol.longer_tasks:
        return []
    method = protocol.lever_method
    lines = [
        "## Is p-tuning-v2 trained to convergence here?",
        "",
        f"The main cells give every method the same epochs. Here {method}'s main cell (first seed, the "
        f"same settings) trains again with {protocol.longer_factor} times the epochs, beside fine-tuning's "
        "cell of the same seed. 'Still rising': the best dev score came at the last epoch.",
        "",
        f"| task | fine-tune | {method}, protocol epochs | {method}, {protocol.longer_factor}x epochs "
        f"| longer − protocol epochs | longer − FT |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for check in checks:
        main, longer, ft = check["main"], check["longer"], check["fine_tune"]
        name = TASK_TITLES.get(check["task"], check["task"])
        gain = f"{100 * (longer['score'] - main['score']):+.1f}" if longer and main else "—"
        to_ft = f"{100 * (longer['score'] - ft['score']):+.1f}" if longer and ft else "—"
        lines.append(
            f"| {name} (seed {check['seed']}) | {_describe(ft)} | {check['epochs']} epochs: {_describe(main)} "
            f"| {check['longer_epochs']} epochs: {_describe(longer)} | {gain} | {to_ft} |"
        )
        if not (longer and main and ft):
            verdicts.append(f"- {name}: not enough results.")
            continue
        delta = 100 * (longer["score"] - main["score"])
        gap = 100 * (longer["score"] - ft["score"])
        trained = (
            f"{protocol.longer_factor}x the epochs {'gained' if delta > 0 else 'changed'} {delta:+.1f} points"
        )
        within = f"within {WITHIN_FT:g} point of" if abs(gap) <= WITHIN_FT else f"{abs(gap):.1f} points "
        within += "" if abs(gap) <= WITHIN_FT else ("above" if gap > 0 else "below")
        verdicts.append(f"- {name}: {trained}; trained longer, {method} is {within} fine-tuning (one seed).")
    return lines + [""] + verdicts + [""]
