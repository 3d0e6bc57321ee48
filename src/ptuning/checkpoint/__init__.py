"""Prompt checkpoints: writing them atomically (`files`) and validating every file before it is
loaded: the config (`schema`, with `Checkpoint`, a folder whose config was read and checked once),
then the tensors (`tensors`), every file opened by `reading`."""

from .files import (
    FORMAT_VERSION,
    RUN_ID,
    CheckpointWriteError,
    atomic_write_text,
    check_backbone,
    checkpoint_method,
    commit_staged,
    load_state,
    load_training_state,
    new_run_id,
    read_config,
    recorded_inputs,
    save_checkpoint,
    spec_from_config,
    staging_dir,
)
from .reading import MAX_CONFIG_BYTES, read_checkpoint_file
from .schema import (
    CONFIG_NAME,
    TRAIN_CONFIG_NAME,
    WEIGHTS_NAME,
    Checkpoint,
    read_config_file,
    validate_config,
)
from .tensors import MAX_ABS_WEIGHT, check_tensors, expected_tensors, load_finite, read_header

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "MAX_ABS_WEIGHT",
    "MAX_CONFIG_BYTES",
    "RUN_ID",
    "TRAIN_CONFIG_NAME",
    "WEIGHTS_NAME",
    "Checkpoint",
    "CheckpointWriteError",
    "atomic_write_text",
    "check_backbone",
    "check_tensors",
    "commit_staged",
    "expected_tensors",
    "checkpoint_method",
    "load_finite",
    "load_state",
    "load_training_state",
    "new_run_id",
    "read_checkpoint_file",
    "read_config",
    "read_config_file",
    "read_header",
    "recorded_inputs",
    "save_checkpoint",
    "spec_from_config",
    "staging_dir",
    "validate_config",
]
