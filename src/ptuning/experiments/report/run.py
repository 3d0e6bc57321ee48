"""Training one cell (`run_cell`) and keeping its row: one JSON line per finished cell in
``results.jsonl`` (`record_row`, `read_results`); a rerun skips what is done. Which cell runs when is
`schedule.run_protocol`'s."""

from __future__ import annotations

import json
import math
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ...errors import DataError
from .cells import (
    PROTOCOL_PINS,
    Cell,
    kept_levers,
    setting_of,
    shared_settings,
)
from .protocols import RESULTS, Protocol


class ResultsError(DataError):
    """A results.jsonl line that is not a row `run_protocol` writes (one line naming file and line)."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# what rendering reads of a row: field -> (check, what it must be)
_ROW_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "key": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "status": (lambda v: v in ("ok", "error"), '"ok" or "error"'),
}
_OK_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": (lambda v: isinstance(v, str), "a string"),
    "method": (lambda v: isinstance(v, str), "a string"),
    "kind": (lambda v: isinstance(v, str), "a string"),
    "metric": (lambda v: isinstance(v, str), "a string"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "prefix_len": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "score": (_number, "a finite number"),
    "trainable_params": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "total_params": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "train_seconds": (_number, "a finite number"),
    "curve": (
        lambda v: (
            isinstance(v, list)
            and all(isinstance(c, dict) and _number(c.get("metric")) and _number(c.get("epoch")) for c in v)
        ),
        "a list of {epoch, metric} objects with finite numbers",
    ),
}


def row_problem(row: Any) -> str | None:
    """None when `row` is a row rendering can read, else what is wrong with it."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got a JSON {type(row).__name__}"
    fields = {**_ROW_FIELDS, **(_OK_FIELDS if row.get("status") == "ok" else {})}
    for name, (check, expected) in fields.items():
        if name not in row:
            if name == "curve":
                continue
            return f"'{name}' is missing"
        if not check(row[name]):
            shown = json.dumps(row[name], default=str)[:40]
            return f"'{name}' must be {expected}, got {shown}"
    return None


def _parse(line: bytes) -> Any:
    """One line as JSON; raises ValueError saying why not."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        # NaN and Infinity are not JSON: they would reach the table as numbers
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def read_results(folder: Path, *, strict: bool = False) -> list[dict[str, Any]]:
    """The rows of `folder`'s results.jsonl. A last line without its newline that does not parse is
    what a crash mid-write leaves: skipped (that cell runs again). Any other line that is not a row
    is skipped too, or with `strict` (`ptuning report --render-only`) a ResultsError naming the file
    and line; strict, a missing file or one without rows is an error too."""
    path = Path(folder) / RESULTS
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if strict:
            raise ResultsError(f"{path}: no such file; run the protocol first (ptuning report)") from None
        return []
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    rows = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = _parse(line)
        except ValueError as exc:
            if number == len(lines):  # the last line, without its newline: a crash cut it short
                continue
            row, problem = None, str(exc)
        else:
            problem = row_problem(row)
        if problem is None:
            rows.append(row)
        elif strict:
            raise ResultsError(f"{path}:{number}: {problem}; expected a row ptuning report writes")
    if strict and not rows:
        raise ResultsError(f"{path}: the file holds no results; run the protocol first (ptuning report)")
    return rows


def drop_cut_line(folder: Path) -> None:
    """Remove a last line a crash cut short (no newline, not JSON), so that the next row starts on a
    line of its own and the file renders strictly; its cell runs again."""
    path = Path(folder) / RESULTS
    try:
        raw = path.read_bytes()
    except OSError:
        return
    if not raw or raw.endswith(b"\n"):
        return
    head, _, last = raw.rpartition(b"\n")
    try:
        _parse(last)
        keep = raw + b"\n"  # a whole row that only lacks its newline
    except ValueError:
        keep = head + b"\n" if head else b""
    from ...checkpoint import atomic_write_text

    atomic_write_text(path, keep.decode("utf-8", errors="replace"))


def _append(folder: Path, row: dict[str, Any]) -> None:
    with (Path(folder) / RESULTS).open("a") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()


def _learning_curve(run_dir: Path, metric: str) -> list[dict[str, float]]:
    """(epoch, dev metric, train loss) per evaluation, from the last checkpoint's trainer state."""
    from ...training.trainer import CHECKPOINTS, complete_checkpoints

    found = complete_checkpoints(run_dir / CHECKPOINTS)
    if not found:
        return []
    history = json.loads((found[-1] / "trainer_state.json").read_text()).get("log_history", [])
    curve, last_loss = [], None
    for entry in history:
        if "loss" in entry:
            last_loss = entry["loss"]
        key = f"eval_{metric}"
        if key in entry:
            curve.append({"epoch": entry.get("epoch"), "metric": entry[key], "train_loss": last_loss})
    return curve


def _processor() -> str:
    """What trained the cell: the GPU's name where one did, else the CPU's (rows of one report
    may come from several machines)."""
    import torch

    from ...core.precision import processor_name

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else processor_name()


def run_cell(
    cell: Cell,
    protocol: Protocol,
    work: Path,
    *,
    bf16: bool | None = False,
    data_dir: str | None = None,
    threads: int | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one cell; `settings` (TrainConfig fields: tuned values, the method's final settings)
    override the protocol's."""
    import torch

    from ...core.config import default_learning_rate
    from ...training.config import TrainConfig
    from ...training.run import train

    if threads:
        torch.set_num_threads(threads)

    setting = setting_of(protocol, cell.task)
    run_dir = work / cell.key.replace("/", "_")
    # a cell cut short (a killed run) goes on from its last complete checkpoint
    resume = any((run_dir / "checkpoints").glob("checkpoint-*"))
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainConfig.build(
        **{
            **PROTOCOL_PINS,
            **shared_settings(protocol, setting, cell.method, bf16=bf16, data_dir=data_dir),
            "prefix_len": cell.prefix_len,
            "seed": cell.seed,
            "learning_rate": setting.learning_rates.get(cell.method),
            "output_dir": str(run_dir),
            "progress": False,
            "resume": resume,
            **({"max_train_samples": 0} if cell.method in protocol.zero_shot_methods else {}),
            **(settings or {}),
        }
    )
    if cfg.learning_rate is None:  # a protocol's cells keep the method's own rate, not the kind's
        cfg = replace(cfg, learning_rate=default_learning_rate(cfg.method, cfg.prompt.prefix_projection))
    row: dict[str, Any] = {**asdict(cell), "key": cell.key, "protocol": protocol.name}
    if settings:
        row["settings"] = settings
    if resume:  # its seconds count only this run's part
        row["resumed"] = True
    start = time.perf_counter()
    try:
        metrics = train(cfg)
        row.update(
            status="ok",
            metric=metrics["metric"],
            score=metrics["validation"][metrics["metric"]],
            validation=metrics["validation"],
            trainable_params=metrics["trainable_params"],
            total_params=metrics["total_params"],
            checkpoint_bytes=metrics.get("checkpoint_bytes"),
            train_seconds=metrics["train_seconds"],
            train_examples=metrics["train_examples"],
            eval_examples=metrics["eval_examples"],
            learning_rate=cfg.lr,
            curve=_learning_curve(run_dir, metrics["metric"]),
            precision=metrics.get("precision"),
            processor=_processor(),
        )
        for name in ("epochs_done", "best_epoch", "stopped_early"):  # --epochs auto: where it stopped
            if name in metrics:
                row[name] = metrics[name]
        if protocol.validation_split:
            # the split chose the checkpoint (its score selects); the dev set, scored once, reports
            row["selection_score"] = row["score"]
            if "dev" not in metrics:
                raise DataError(f"{cell.task}: no dev set to score once after training on the split")
            row.update(score=metrics["dev"][metrics["metric"]], dev=metrics["dev"])
        if not _number(row["score"]):  # a diverged run: no result to render (the cell runs again)
            row.update(status="error", error=f"the dev {row['metric']} is {row['score']}")
    except Exception as exc:  # recorded as the cell's result; the protocol goes on
        row.update(status="error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-2000:])
    row["wall_seconds"] = round(time.perf_counter() - start, 1)
    shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints are not part of the report
    return row


def final_settings(protocol: Protocol, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each method's settings for its main cells: the protocol's, and for the lever method the levers
    that helped."""
    out = {method: dict(values) for method, values in protocol.final_settings.items()}
    for name, verdict in kept_levers(protocol, rows).items():
        if verdict["kept"]:
            out.setdefault(protocol.lever_method, {}).update(protocol.levers[name])
    return out


WORK_DIR = "_runs"  # the cells' run folders: removed once every cell of a run has ended


def record_row(folder: Path, cell: Cell, row: dict[str, Any], index: int | str, log) -> None:
    """Append a finished cell's row to results.jsonl and log it."""
    _append(folder, row)
    if row["status"] == "ok":
        log(f"[{index}] {cell.key}: {row['metric']} {row['score']:.4f} in {row['wall_seconds']:.0f} s")
    else:
        log(f"[{index}] {cell.key}: failed: {row['error']}")


def clear_work(work: Path) -> None:
    """Every cell has ended (a cut run keeps the folder: its cells resume from their checkpoints)."""
    shutil.rmtree(work, ignore_errors=True)
