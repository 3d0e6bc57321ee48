"""The data of a training run, from its `TrainConfig`: a built-in task, or the user's own data,
with a validation split held out where asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError
from ..tasks import DEFAULT_VALIDATION_SPLIT
from .holdout import hold_out
from .registry import load_task
from .tables import describe_source, is_in_memory_record
from .user_files import load_user_task

if TYPE_CHECKING:  # data reads the run's settings; it does not build on the training layer
    from ..training.config import TrainConfig

EVAL_SUBSET_SEED = 0  # the same evaluation subset whatever the training seed, so runs compare


def load_data(cfg: TrainConfig):
    """The run's `TaskData`: a built-in task, or the user's own data (files or data passed from
    Python), with a validation split held out of the training data where `cfg.validation_split` asks.

    Without --validation-split the validation data is --validation-file, or the validation part of a
    DatasetDict given as --train-file, else a `DEFAULT_VALIDATION_SPLIT` share held out of the
    training data; with it, any validation data becomes `TaskData.test`."""
    own = cfg.train_file is not None or cfg.validation_file is not None
    if own and cfg.train_file is None:
        raise DataError("--validation-file needs --train-file (the data to train on)")
    if own:
        data = load_user_task(
            cfg.task_type,
            cfg.train_file,
            cfg.validation_file,
            text_column=cfg.text_column,
            text_pair_column=cfg.text_pair_column,
            label_column=cfg.label_column,
            tag_column=cfg.tag_column,
            name=cfg.task,
            require_validation=False,
        )
    else:
        data = load_task(cfg.task, cfg.data_dir)
    split = cfg.validation_split
    if split is None and not data.validation:  # your own data without any: hold some out
        split = DEFAULT_VALIDATION_SPLIT
    if split is not None:
        data = hold_out(data, split, EVAL_SUBSET_SEED)
    return data


def check_resumed_data(cfg: TrainConfig) -> None:
    """A resumed run must train on the data its checkpoints came from: a folder trained on data passed
    from Python is resumed from Python, with that data (train_config.json records its description)."""
    if not cfg.resume:
        return
    try:
        before = json.loads((Path(cfg.output_dir) / "train_config.json").read_text())
    except (OSError, ValueError):
        return
    recorded = before.get("train_file") if isinstance(before, dict) else None
    if is_in_memory_record(recorded) and recorded != describe_source(cfg.train_file):
        raise DataError(
            f"{cfg.output_dir} was trained on data passed from Python ({recorded}): resume it from Python "
            "with the same data (ptuning.train(TrainConfig.build(train_file=..., resume=True)))"
        )
