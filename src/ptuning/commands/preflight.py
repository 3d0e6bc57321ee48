"""Checks of a training run's settings and files that need neither torch nor transformers.

`ptuning train` runs them before it imports the model code, which takes seconds: a wrong path, a
missing column or an option out of range then fails in well under a second, with the one-line
error the data readers would give later. They look at what is cheap to look at (that files exist,
a table's header, a JSON-lines file's first record); the readers still check every record.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path

from ..errors import CheckpointError, DataError, UserError
from ..methods import get_method, method_names
from ..training.config import TrainConfig
from .fields import field_options

__all__ = ["EARLY_STOPPING_OPTIONS", "check_before_loading", "flag_of"]

# the options that only --epochs auto reads
EARLY_STOPPING_OPTIONS = ("patience", "min_delta", "min_epochs", "max_epochs")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}  # as ptuning.data.readers reads them
# ptuning.data.tables.TABLE_FILE_BUILDERS: what a table file may be
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".arrow")
# ptuning.data.tables.IN_MEMORY_PREFIX: how train_config.json records data passed from Python
IN_MEMORY_PREFIX = "<in-memory"
# ptuning.checkpoint.schema.CONFIG_NAME and ptuning.training.transfer.MULTITASK_FILE (both modules import torch)
CHECKPOINT_CONFIG = "ptuning_config.json"
MULTITASK_FILE = "multitask.json"
# --report-to value -> the module it needs, which is also what to pip install
REPORTER_PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}


def flag_of(name: str) -> str:
    """The command-line option of a TrainConfig field (`learning_rate` -> --lr)."""
    for option in field_options(TrainConfig):
        if option.path[-1] == name:
            return option.flags[0]
    return "--" + name.replace("_", "-")


def check_before_loading(cfg: TrainConfig, explicit: Iterable[str] = ()) -> None:
    """One-line UserErrors for what can be told wrong before any model code loads. `explicit`: the
    options given on the command line (an early-stopping option without --epochs auto is refused
    rather than silently ignored)."""
    check_ranges(cfg)
    check_early_stopping(cfg, set(explicit))
    check_files(cfg)
    check_report_to(cfg.report_to)


def check_ranges(cfg: TrainConfig) -> None:
    at_least_one = ("batch_size", "eval_batch_size", "grad_accum", "max_seq_length", "logging_steps")
    for name in at_least_one:
        value = getattr(cfg, name)  # None: the kind of task decides (max_seq_length)
        if value is not None and value < 1:
            raise UserError(f"{flag_of(name)} must be >= 1, got {value}")
    for name in ("save_steps", "max_eval_samples"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise UserError(f"{flag_of(name)} must be >= 1 (or none), got {value}")
    if cfg.max_train_samples is not None and cfg.max_train_samples < 0:
        raise UserError(f"--max-train-samples must be >= 0 (or none: all), got {cfg.max_train_samples}")
    if cfg.max_train_samples == 0 and not get_method(cfg.method).zero_shot:
        raise UserError(
            "--max-train-samples 0 leaves nothing to train (0 goes with --method "
            f"{' or '.join(name for name in method_names() if get_method(name).zero_shot)}: zero-shot)"
        )
    if cfg.learning_rate is not None and not cfg.learning_rate >= 0:
        raise UserError(f"--lr must be >= 0, got {cfg.learning_rate:g}")
    if not cfg.weight_decay >= 0:
        raise UserError(f"--weight-decay must be >= 0, got {cfg.weight_decay:g}")
    if not 0 <= cfg.warmup_ratio <= 1:
        raise UserError(f"--warmup-ratio is a share of the steps, from 0 to 1; got {cfg.warmup_ratio:g}")
    if cfg.task_sampling == "temperature" and not cfg.sampling_temperature > 0:
        raise UserError(f"--sampling-temperature must be > 0, got {cfg.sampling_temperature:g}")


def check_early_stopping(cfg: TrainConfig, explicit: set[str]) -> None:
    if cfg.auto_epochs and not get_method(cfg.method).gradient:
        raise UserError(f"--epochs auto stops a training by gradient: --method {cfg.method} has none")
    given = [flag_of(name) for name in EARLY_STOPPING_OPTIONS if name in explicit]
    if given and not cfg.auto_epochs:
        raise UserError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --epochs auto")


def check_files(cfg: TrainConfig) -> None:
    """The data files and --init-from exist; a table has the columns asked for. (A built-in task's
    missing data folder is left to its loader, whose error names the files to put there.)"""
    sources = (cfg.train_file, cfg.validation_file)
    if not all(isinstance(f, str | None) for f in sources) or any(
        isinstance(f, str) and f.startswith(IN_MEMORY_PREFIX) for f in sources
    ):
        return  # data passed from Python, or its description in a settings file: the readers say
    trains = _listed(cfg.train_file)
    validations = _listed(cfg.validation_file)
    if validations and not trains:
        raise UserError("--validation-file needs --train-file (the data to train on)")
    for option, paths in (("--train-file", trains), ("--validation-file", validations)):
        for path in paths:
            _check_source(Path(path), option, cfg)
    if cfg.init_from:
        _check_init_from(Path(cfg.init_from))


def check_report_to(report_to: str) -> None:
    package = REPORTER_PACKAGES.get(report_to)
    if package is not None and importlib.util.find_spec(package) is None:
        raise UserError(f"--report-to {report_to} needs the {package} package: pip install {package}")


def _check_init_from(folder: Path) -> None:
    """A checkpoint folder or a multi-task output folder, as `ptuning.training.transfer.prompt_checkpoint` reads."""
    if not folder.is_dir():
        raise CheckpointError(f"--init-from {folder}: not a ptuning checkpoint (no such folder)")
    if not ((folder / CHECKPOINT_CONFIG).is_file() or (folder / MULTITASK_FILE).is_file()):
        raise CheckpointError(
            f"--init-from {folder}: not a ptuning checkpoint ({CHECKPOINT_CONFIG} missing) "
            f"nor a multi-task output folder ({MULTITASK_FILE} missing)"
        )


def _listed(files: str | None) -> list[str]:
    return [f.strip() for f in (files or "").split(",") if f.strip()]


def _check_source(path: Path, option: str, cfg: TrainConfig) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found ({option})")
    if path.is_dir() or cfg.task_type not in ("classification", "regression"):
        return  # save_to_disk folders, CoNLL columns, SQuAD JSON: the readers look at them whole
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; expected {', '.join(TABLE_SUFFIXES)} "
            f"or a save_to_disk folder ({option})"
        )
    if suffix not in (*TABLE_DELIMITERS, ".jsonl"):
        return  # JSON arrays, Parquet, Arrow: read whole through `datasets`
    required = [c for c in (cfg.text_column, cfg.text_pair_column, cfg.label_column) if c is not None]
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            if suffix == ".jsonl":
                _check_first_record(path, handle, required)
            else:
                _check_header(path, handle, TABLE_DELIMITERS[suffix], required)
    except (UnicodeDecodeError, csv.Error):
        return  # the reader names the line and byte


def _check_header(path: Path, handle, delimiter: str, required: list[str]) -> None:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        columns = [cell.strip() for cell in row]
        missing = [name for name in required if name not in columns]
        if missing:
            raise DataError(
                f"{path}, line {reader.line_num}: missing column {missing[0]!r} (expected "
                f"{', '.join(required)}); columns found: {', '.join(columns)}"
            )
        return
    raise DataError(f"{path}: file is empty")


def _check_first_record(path: Path, handle, required: list[str]) -> None:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            return  # the reader says where and why
        if isinstance(record, dict):
            missing = [key for key in required if record.get(key) is None]
            if missing:
                found = ", ".join(map(str, record)) or "none"
                raise DataError(f"{path}, line {number}: missing key {missing[0]!r}; keys found: {found}")
        return
    raise DataError(f"{path}: file is empty")
