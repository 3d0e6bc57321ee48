"""Which run an output folder holds, and whether this run may replace or resume it: the settings a
run records (`train_config.json`, in the folder and in its `checkpoints/`), compared key by key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checkpoint import CONFIG_NAME, RUN_ID, TRAIN_CONFIG_NAME
from ..data.load import check_resumed_data
from ..errors import DataError
from .config import TrainConfig
from .trainer import CHECKPOINTS

RUN_SETTINGS = TRAIN_CONFIG_NAME  # a run's settings, beside its checkpoint and its training checkpoints


def _trained_on(cfg: dict[str, Any]) -> tuple[str, str | None]:
    """(task name as the registry reads it, absolute training file or None) of a run's settings."""
    train_file = cfg.get("train_file")
    return str(cfg.get("task")).strip().lower(), str(Path(train_file).resolve()) if train_file else None


def check_output_dir(cfg: TrainConfig) -> bool:
    """Refuse to replace a checkpoint of another task or other training data in `cfg.output_dir`
    (one line naming both), unless `cfg.overwrite` or `cfg.resume`. True when `cfg.overwrite`
    replaces such a checkpoint."""
    output = Path(cfg.output_dir)
    if cfg.resume or not (output / CONFIG_NAME).is_file():
        return False
    saved = output / RUN_SETTINGS
    try:
        before = json.loads(saved.read_text()) if saved.is_file() else None
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict):
        old_task, old_file = _trained_on(before)
    else:  # a checkpoint saved without train_config.json: its task name only
        try:
            old_task = str(json.loads((output / CONFIG_NAME).read_text())["task"]["name"]).lower()
            old_file = None
        except (OSError, ValueError, KeyError, TypeError):
            old_task, old_file = "unknown", None
    new_task, new_file = _trained_on(cfg.to_dict())
    if (old_task, old_file) == (new_task, new_file):
        return False
    if cfg.overwrite:
        return True
    describe = lambda task, file: f"task {task!r}" + (f" on {file}" if file else "")  # noqa: E731
    raise DataError(
        f"{output} already holds a checkpoint of {describe(old_task, old_file)}; this run is "
        f"{describe(new_task, new_file)}: give another --output-dir, or --overwrite to replace it"
    )


# keys of train_config.json that change neither the data nor the arithmetic of a run: a resumed run
# may differ in them
NOT_SETTINGS = (
    "output_dir",
    "resume",
    "overwrite",
    "resume_with_changes",
    "progress",
    "activation_checkpointing",
    RUN_ID,
)


def run_settings(output: Path) -> dict[str, Any] | None:
    """The settings of the run whose training checkpoints are in `output` (the record written when
    it started, `checkpoints/train_config.json`), else those of its finished checkpoint."""
    for path in (Path(output) / CHECKPOINTS / RUN_SETTINGS, Path(output) / RUN_SETTINGS):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            return data
    return None


def check_resume(cfg: TrainConfig, settings: dict[str, Any]) -> str | None:
    """With `cfg.resume`: refuse settings that differ from the run's in `cfg.output_dir` (one line
    naming them) unless `cfg.resume_with_changes`. Returns the run's id, which the resumed run keeps
    (None when there is no run there, or it has none)."""
    check_resumed_data(cfg)  # data passed from Python: its own message, before the settings' diff
    before = run_settings(Path(cfg.output_dir))
    if before is None:
        return None
    now = json.loads(json.dumps(settings, default=str))  # as train_config.json holds them
    changed = sorted(
        key
        for key in set(before) & set(now)  # a key another version lacks is no change
        if key not in NOT_SETTINGS and key != "task" and before[key] != now[key]
    )
    if _trained_on(before) != _trained_on(now):
        changed.insert(0, "task")
    if changed and not cfg.resume_with_changes:
        shown = "; ".join(f"{key} {before.get(key)!r} there, {now.get(key)!r} now" for key in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise DataError(
            f"--resume: {cfg.output_dir} is a run with other settings ({shown}{more}): give its own "
            "settings, or --resume-with-changes to continue it with these"
        )
    run_id = before.get(RUN_ID)
    return run_id if isinstance(run_id, str) and run_id else None
