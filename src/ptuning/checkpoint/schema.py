"""The one checkpoint validator that every loader runs (eval, predict, serve, adding a task).

A checkpoint is checked in three steps, each before the next allocates anything:
  1. `validate_config` (here): `ptuning_config.json` is a regular file of at most
     `MAX_CONFIG_BYTES`, UTF-8 JSON, an object whose every string is valid Unicode, with every key
     the writer records of the right type, range or enum (unknown extra keys are tolerated, for
     newer writers);
  2. `tensors.read_header`: `prompt.safetensors` is a safetensors file whose header parses (read by
     the safetensors library, without loading the tensors): truncated files, huge header lengths
     and shapes that claim more bytes than the file holds are refused here;
  3. `tensors.check_tensors`: the header's names, dtypes and shapes are those the config and the
     backbone call for (`expected_tensors`); then `load_finite` loads the tensors and refuses NaN,
     infinity and magnitudes above `MAX_ABS_WEIGHT` (finite, but they overflow the forward pass to
     NaN).
Every file of a checkpoint is opened by `reading.read_checkpoint_file` / `check_regular_file`: only a
regular file (links resolved), never more than a size cap, so a FIFO or a link to /dev/zero is
refused instead of hanging or filling memory. `Checkpoint.read` reads and checks a folder's config
once; a `Checkpoint` is path-like, and every loader given one reuses its checked config.
Every failure is a `CheckpointError` of one line naming the file and what was expected.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from ..core.config import METHODS, PairEncoding, PrefixInit
from ..core.limits import MAX_PREFIX_LEN, MAX_PROMPT_LAYERS
from ..data.inputs import FILE_FORMATS, InputFormat
from ..errors import CheckpointError
from ..methods import Method, find_method, get_method
from ..tasks import TASK_TYPES
from .reading import read_checkpoint_file

CONFIG_NAME = "ptuning_config.json"
WEIGHTS_NAME = "prompt.safetensors"
TRAIN_CONFIG_NAME = "train_config.json"
MAX_PROJECTION_HIDDEN = 16384
MAX_LABELS = 100_000
MAX_SEQ_LENGTH = 1_000_000


# --- step 1: the config -------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) and math.isfinite(value)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Schema:
    """Checks of one config object; each failure names the file, the key and what was expected."""

    def __init__(self, path: Path, data: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.data, self.prefix = path, data, prefix

    def fail(self, key: str, expected: str) -> CheckpointError:
        got = f"got {_show(self.data[key])}" if key in self.data else "it is missing"
        return CheckpointError(f"{self.path}: '{self.prefix}{key}' must be {expected}; {got}")

    def present(self, key: str, required: bool) -> bool:
        if key not in self.data:
            if required:
                raise self.fail(key, "present")
            return False
        return True

    def string(self, key: str, *, required: bool = True, nonempty: bool = True, null: bool = False) -> None:
        if self.present(key, required):
            value = self.data[key]
            if value is None and null:
                return
            if not isinstance(value, str) or (nonempty and not value):
                expected = "a non-empty string" if nonempty else "a string"
                raise self.fail(key, expected + (" or null" if null else ""))

    def enum(self, key: str, choices: tuple[str, ...], *, required: bool = True) -> None:
        if self.present(key, required) and self.data[key] not in choices:
            raise self.fail(key, f"one of {', '.join(choices)}")

    def integer(self, key: str, low: int, high: int, *, required: bool = False, null: bool = False) -> None:
        if self.present(key, required):
            value = self.data[key]
            if value is None and null:
                return
            if not _is_int(value) or not low <= value <= high:
                raise self.fail(key, f"an integer from {low} to {high}" + (" or null" if null else ""))

    def number(self, key: str, low: float, high: float, *, required: bool = False) -> None:
        if self.present(key, required):
            value = self.data[key]
            if not _is_number(value) or not low <= value <= high:
                raise self.fail(key, f"a number from {low} to {high}")

    def boolean(self, key: str, *, required: bool = False) -> None:
        if self.present(key, required) and not isinstance(self.data[key], bool):
            raise self.fail(key, "true or false")

    def strings(self, key: str, *, required: bool = False, max_items: int = MAX_LABELS) -> None:
        if self.present(key, required):
            value = self.data[key]
            if (
                not isinstance(value, list)
                or len(value) > max_items
                or not all(isinstance(v, str) for v in value)
            ):
                raise self.fail(key, f"a list of at most {max_items} strings")

    def object(self, key: str) -> _Schema:
        self.present(key, True)
        if not isinstance(self.data[key], dict):
            raise self.fail(key, "a JSON object")
        return _Schema(self.path, self.data[key], f"{self.prefix}{key}.")


def _bad_string(value: Any) -> str | None:
    """What names the first string (key or value) in `value` that is not valid Unicode, and why."""
    stack: list[tuple[Any, str, str]] = [(value, "", "")]  # (item, its path, how messages name it)
    while stack:  # a stack, not recursion: JSON may nest as deep as the parser allowed
        item, at, label = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                path = f"{at}.{key}" if at else str(key)
                stack.append((key, path, f"a key of '{at}'" if at else "a top-level key"))
                stack.append((child, path, f"'{path}'"))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]", f"'{at}[{i}]'") for i, child in enumerate(item))
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                why = f"unpaired surrogate U+{ord(item[exc.start]):04X} at character {exc.start}"
                message = f"{label} is not valid Unicode text ({why})"
                return message.encode("utf-8", "backslashreplace").decode()  # a key may hold one too
    return None


def read_config_file(directory: str | Path) -> dict[str, Any]:
    """The parsed JSON object of `ptuning_config.json`, every string in it valid Unicode (no schema
    checks). A `Checkpoint` gives the config it read."""
    if isinstance(directory, Checkpoint):
        return directory.config
    path = Path(directory) / CONFIG_NAME
    try:
        raw = read_checkpoint_file(path)
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointError(f"{directory} is not a ptuning checkpoint: {CONFIG_NAME} is missing") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text (byte {exc.start}); expected a JSON object") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply; expected a flat JSON object") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got a JSON {type(data).__name__}")
    bad = _bad_string(data)
    if bad is not None:  # a lone surrogate ("\ud800" in the JSON) fails every later print or encode
        raise CheckpointError(f"{path}: {bad}; expected UTF-8 text")
    return data


def check_inputs(path: Path, config: Mapping[str, Any]) -> None:
    """The recorded input format (`inputs`) and `max_seq_length`, of any checkpoint kind."""
    top = _Schema(path, config)
    top.integer("max_seq_length", 1, MAX_SEQ_LENGTH, null=True)
    if "inputs" in config:
        inputs = top.object("inputs")
        inputs.enum("file_format", FILE_FORMATS, required=False)
        inputs.string("text_column", required=False)
        inputs.string("text_pair_column", required=False, null=True)
        inputs.string("label_column", required=False)
        inputs.integer("tag_column", -1000, 1000)


def check_config(path: Path, config: Mapping[str, Any]) -> None:
    """The schema of a prompt checkpoint's config (`path` names the file in the errors)."""
    from ..core.config import PromptConfig, check_pair_encoding

    top = _Schema(path, config)
    top.string("backbone", nonempty=False)  # empty for a model built from an in-memory backbone
    top.string("backbone_fingerprint")
    top.string("backbone_model_type", required=False, nonempty=False)
    top.string("ptuning_version", required=False, nonempty=False)
    top.integer("format_version", 0, 1_000_000)
    top.integer("checkpoint_bytes", 0, 2**62)
    top.integer("backbone_bytes", 0, 2**62)
    top.boolean("prefix_folded")
    check_inputs(path, config)
    prompt = top.object("prompt_config")
    prompt.enum("method", METHODS)
    method = prompt.data["method"]
    prompt.integer("prefix_len", 1 if get_method(method).has_prompt else 0, MAX_PREFIX_LEN)
    prompt.boolean("prefix_projection")
    prompt.integer("projection_hidden", 1, MAX_PROJECTION_HIDDEN)
    prompt.number("prompt_dropout", 0.0, 1.0)
    prompt.boolean("prompt_dropout_per_example")
    prompt.number("head_dropout", 0.0, 1.0)
    prompt.boolean("backbone_dropout")
    prompt.number("init_std", 0.0, 1e6)
    prompt.integer("prompt_layers", 1, MAX_PROMPT_LAYERS, null=True)
    prompt.enum("pooling", ("cls", "mean"), required=False)
    prompt.enum("prefix_init", get_args(PrefixInit), required=False)
    prompt.enum("pair_encoding", get_args(PairEncoding), required=False)  # older checkpoints: joint
    task = top.object("task")
    task.string("name")
    task.enum("task_type", TASK_TYPES)
    task.strings("labels")
    task.string("metric", required=False)
    task.integer("num_choices", 0, 1000)
    task.boolean("null_answers")
    task.number("null_threshold", -1e9, 1e9)
    task.strings("notes")
    kind = task.data["task_type"]
    labels = task.data.get("labels", [])
    if kind in ("classification", "token_classification"):
        if not labels:
            raise task.fail("labels", f"a non-empty list of label names for a {kind} task")
        if len(set(labels)) != len(labels):
            raise task.fail("labels", "a list of distinct label names")
    try:  # combinations the types alone allow (prefix_init 'vocab' with the MLP, ...)
        PromptConfig.from_dict(prompt.data)
        check_pair_encoding(kind, prompt.data.get("pair_encoding", "joint"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: 'prompt_config' is inconsistent ({exc})") from None


def validate_config(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's config after the schema checks (raises CheckpointError naming the key)."""
    if isinstance(directory, Checkpoint) and directory.has_weights:
        return directory.config  # checked when it was read
    config = read_config_file(directory)
    check_config(Path(directory) / CONFIG_NAME, config)
    check_run_record(directory, config)
    return config


def _read_train_config(directory: Path) -> dict[str, Any]:
    """train_config.json beside a checkpoint ({} where absent or not a JSON object)."""
    try:
        raw = read_checkpoint_file(directory / TRAIN_CONFIG_NAME)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON: as good as absent (it is a record)
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True, eq=False)
class Checkpoint(os.PathLike):
    """A checkpoint folder whose config was read and checked once (`Checkpoint.read`).

    It is path-like (`os.fspath`, `Path(...)`, `str` give the folder), so it can stand wherever a
    loader takes a folder (`PromptModel.from_pretrained`, `load_handcrafted`, ...); those that read
    the config (`read_config_file`, `validate_config`, `is_handcrafted`, `recorded_inputs`) take
    the checked one from it instead of reading the file again. `method`: the registered method
    that wrote it (`ptuning.methods`), which says how it loads."""

    directory: Path
    config: dict[str, Any]
    method: Method
    inputs: InputFormat
    max_seq_length: int | None

    def __fspath__(self) -> str:
        return os.fspath(self.directory)

    def __str__(self) -> str:
        return str(self.directory)

    @classmethod
    def read(cls, directory: str | Path | Checkpoint) -> Checkpoint:
        """The folder's config read once and checked: the prompt-weights schema, or for a
        handcrafted checkpoint (a template, no weights) its JSON only; then its recorded inputs."""
        if isinstance(directory, Checkpoint):
            return directory
        directory = Path(directory)
        path = directory / CONFIG_NAME
        config = read_config_file(directory)
        prompt = config.get("prompt_config")
        method = find_method(prompt.get("method")) if isinstance(prompt, dict) else None
        if method is not None and not method.prompt_model:  # e.g. a template: no prompt weights
            check_inputs(path, config)
        else:
            check_config(path, config)
            check_run_record(directory, config)
            method = get_method(config["prompt_config"]["method"])
        source: Mapping[str, Any] = config
        if "inputs" not in config and "max_seq_length" not in config:
            # written before they were recorded: train_config.json beside it, else the defaults
            saved = _read_train_config(directory)
            known = {  # None: the default, as `InputFormat.from_dict` reads it
                k: v
                for k, v in saved.items()
                if k in InputFormat.__dataclass_fields__ and (v is not None or k == "text_pair_column")
            }
            source = {"inputs": known, "max_seq_length": saved.get("max_seq_length")}
            check_inputs(directory / TRAIN_CONFIG_NAME, source)
        try:
            inputs = InputFormat.from_dict(source.get("inputs"))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad 'inputs' ({exc})") from None
        return cls(directory, config, method, inputs, source.get("max_seq_length"))

    @property
    def has_weights(self) -> bool:
        """True for a prompt-weights checkpoint (a `PromptModel`'s), checked as such when read."""
        return self.method.prompt_model

    @functools.cached_property
    def train_config(self) -> dict[str, Any]:
        """The training run's train_config.json beside it ({} where absent or not a JSON object)."""
        return _read_train_config(self.directory)


def check_run_record(directory: str | Path, config: Mapping[str, Any]) -> None:
    """A config that names its run (`run_id`, written by `ptuning train`) must sit beside the weights
    and the train_config.json of that same run: a folder mixing two runs' files is refused, naming
    both ids. Weights that cannot be read are left to `read_header` to report."""
    run_id = config.get("run_id")
    if run_id is None:  # a checkpoint from before run ids, or a Trainer's intermediate one
        return
    path = Path(directory) / CONFIG_NAME
    if not isinstance(run_id, str) or not run_id:
        raise CheckpointError(f"{path}: 'run_id' must be a non-empty string; got {_show(run_id)}")
    weights = Path(directory) / WEIGHTS_NAME
    theirs = run_id
    if weights.is_file():  # only a regular file is opened here (a FIFO would block); read_header says more
        try:
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as handle:
                theirs = (handle.metadata() or {}).get("run_id")
        except Exception:  # unreadable: read_header says why
            theirs = run_id
    if theirs != run_id:
        raise CheckpointError(
            f"{weights} is of run {theirs or 'unknown'}, {CONFIG_NAME} of run {run_id}: the folder mixes "
            "two runs' files; train again into it, or into another --output-dir"
        )
    saved = Path(directory) / "train_config.json"
    if not saved.is_file() or saved.stat().st_size > 1 << 20:
        return  # the settings are a record for people; a checkpoint loads without them
    try:
        settings = json.loads(saved.read_text())
    except (OSError, ValueError, RecursionError):
        return
    recorded = settings.get("run_id") if isinstance(settings, dict) else None
    if recorded is not None and recorded != run_id:
        raise CheckpointError(
            f"{saved} is of run {recorded}, {CONFIG_NAME} of run {run_id}: the folder mixes two runs' "
            "files; train again into it, or into another --output-dir"
        )
