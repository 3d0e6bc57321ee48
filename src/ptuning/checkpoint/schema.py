"""The one checkpoint validator that every loader runs (eval, predict, serve, adding a task).

A checkpoint is checked in three steps, each before the next allocates anything:
  1. `validate_config`: `ptuning_config.json` is a regular file of at most `MAX_CONFIG_BYTES`, UTF-8
     JSON, an object whose every string is valid Unicode, with every key the writer records of the
     right type, range or enum (unknown extra keys are tolerated, for newer writers);
  2. `read_header`: `prompt.safetensors` is a safetensors file whose header parses (read by the
     safetensors library, without loading the tensors): truncated files, huge header lengths and
     shapes that claim more bytes than the file holds are refused here;
  3. `check_tensors`: the header's names, dtypes and shapes are those the config and the backbone
     call for (`expected_tensors`); then `load_finite` loads the tensors and refuses NaN, infinity
     and magnitudes above `MAX_ABS_WEIGHT` (finite, but they overflow the forward pass to NaN).
Every file of a checkpoint is opened by `read_checkpoint_file` / `check_regular_file`: only a regular
file (links resolved), never more than a size cap, so a FIFO or a link to /dev/zero is refused
instead of hanging or filling memory. `Checkpoint.read` reads and checks a folder's config once;
a `Checkpoint` is path-like, and every loader given one reuses its checked config.
Every failure is a `CheckpointError` of one line naming the file and what was expected.
"""

from __future__ import annotations

import functools
import json
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import torch

from ..core.backbones import geometry
from ..core.config import METHODS, PairEncoding, PrefixInit
from ..core.limits import MAX_PREFIX_LEN, MAX_PROMPT_LAYERS
from ..data.inputs import FILE_FORMATS, InputFormat
from ..errors import CheckpointError
from ..methods import Method, find_method, get_method
from ..tasks import TASK_TYPES

CONFIG_NAME = "ptuning_config.json"
WEIGHTS_NAME = "prompt.safetensors"
TRAIN_CONFIG_NAME = "train_config.json"
MAX_PROJECTION_HIDDEN = 16384
MAX_LABELS = 100_000
MAX_SEQ_LENGTH = 1_000_000
# A config holds names, labels and notes: even 100k long labels stay far below this.
MAX_CONFIG_BYTES = 64 * 2**20
# A fine-tune checkpoint carries its backbone: the largest supported one is a few GiB.
MAX_WEIGHTS_BYTES = 64 * 2**30
# Trained prompts and heads (and backbones) stay far below this; much larger finite values overflow
# the forward pass (attention scores, a layer norm's squares) to infinity and the answers to NaN.
MAX_ABS_WEIGHT = 1e6
FLOAT_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


# --- opening a checkpoint's files ---------------------------------------------------------------

_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_stat(path: Path, info: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a plain file")
        raise CheckpointError(
            f"{path}: not a regular file ({kind}); expected the file `ptuning train` writes"
        )
    if info.st_size > limit:
        raise CheckpointError(
            f"{path}: {info.st_size} bytes, larger than the {limit} a checkpoint file may be"
        )


def check_regular_file(path: str | Path, *, limit: int = MAX_WEIGHTS_BYTES) -> None:
    """Refuse `path` unless it is a regular file (links resolved) of at most `limit` bytes: what a
    file is checked for before a library (safetensors) opens it. FileNotFoundError passes through."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows links: a link to a FIFO or /dev/zero is what it points at
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    _check_stat(path, info, limit)


def read_checkpoint_file(path: str | Path, *, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of one checkpoint file, read only if it is a regular file (links resolved) and
    never more than `limit` bytes (CheckpointError otherwise). FileNotFoundError passes through."""
    path = Path(path)
    check_regular_file(path, limit=limit)
    try:
        # non-blocking: should the file be swapped for a FIFO after the check, opening cannot hang
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        _check_stat(path, os.fstat(fd), limit)
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if size > limit:  # it grew while read
        raise CheckpointError(f"{path}: larger than the {limit} bytes a checkpoint file may be")
    return b"".join(chunks)


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


# --- step 2: the safetensors header -------------------------------------------------------------


def read_header(directory: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) from the file's header, without loading any tensor."""
    from safetensors import safe_open

    path = Path(directory) / WEIGHTS_NAME
    try:
        check_regular_file(path, limit=MAX_WEIGHTS_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointError(f"checkpoint {directory} has no {WEIGHTS_NAME}") from None
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); expected a safetensors file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {
                name: (handle.get_slice(name).get_dtype(), tuple(handle.get_slice(name).get_shape()))
                for name in handle.keys()  # noqa: SIM118 (a safe_open handle is not a dict)
            }
    except Exception as exc:  # safetensors raises its own error type, or OSError
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({reason}); expected the file `ptuning train` writes"
        ) from None


# --- step 3: names, dtypes, shapes, values ------------------------------------------------------


def expected_tensors(config: Mapping[str, Any], backbone) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor a checkpoint with this (validated) config holds for `backbone`."""
    from ..core.config import PromptConfig

    prompt = PromptConfig.from_dict(config["prompt_config"])
    task = config["task"]
    g = geometry(backbone.config)
    hidden = g.hidden_size
    kind = task["task_type"]
    labels = len(task.get("labels", ()))
    if kind == "question_answering":
        head = 2
    elif kind in ("regression", "multiple_choice"):
        head = 1
    else:
        head = labels
    name = "qa_outputs" if kind == "question_answering" else "classifier"
    width = 4 * hidden if prompt.pair_encoding == "separate" else hidden  # [u, v, |u-v|, u*v]
    shapes: dict[str, tuple[int, ...]] = {f"head.{name}.weight": (head, width), f"head.{name}.bias": (head,)}
    P = prompt.prefix_len
    if prompt.deep:
        layers = min(prompt.prompt_layers or g.num_layers, g.num_layers)
        out = layers * 2 * g.num_heads * g.head_dim
        if prompt.prefix_projection and not config.get("prefix_folded"):
            h = prompt.projection_hidden
            shapes.update(
                {
                    "prefix_encoder.embedding.weight": (P, hidden),
                    "prefix_encoder.mlp.0.weight": (h, hidden),
                    "prefix_encoder.mlp.0.bias": (h,),
                    "prefix_encoder.mlp.2.weight": (out, h),
                    "prefix_encoder.mlp.2.bias": (out,),
                }
            )
        else:
            shapes["prefix_encoder.embedding.weight"] = (P, out)
    elif prompt.input_prompt:
        width = backbone.get_input_embeddings().weight.shape[1]
        shapes["input_prompt.embedding"] = (P, width)
    if not prompt.freezes_backbone:
        for key, tensor in backbone.state_dict().items():
            shapes[f"backbone.{key}"] = tuple(tensor.shape)
    return shapes


def check_tensors(
    directory: str | Path,
    header: Mapping[str, tuple[str, tuple[int, ...]]],
    expected: Mapping[str, tuple[int, ...]],
) -> None:
    """The header's names, dtypes and shapes against those expected (raises CheckpointError)."""
    path = Path(directory) / WEIGHTS_NAME
    missing = sorted(set(expected) - set(header))
    if missing:
        raise CheckpointError(
            f"{path}: tensor {missing[0]!r} is missing ({len(missing)} missing); "
            f"expected the tensors of the {CONFIG_NAME} beside it"
        )
    unexpected = sorted(set(header) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{path}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} unexpected); "
            f"expected only the tensors of the {CONFIG_NAME} beside it"
        )
    for name, shape in expected.items():
        dtype, got = header[name]
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {dtype}; expected a float dtype ({', '.join(FLOAT_DTYPES)})"
            )
        if tuple(got) != tuple(shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {list(got)}, but {CONFIG_NAME} and the backbone call "
                f"for {list(shape)} (prefix_len, labels or prompt_layers do not match the weights)"
            )


def load_finite(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checked file; NaN, infinity or a magnitude above `MAX_ABS_WEIGHT` anywhere
    is a CheckpointError."""
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_NAME
    try:
        check_regular_file(path, limit=MAX_WEIGHTS_BYTES)
        state = load_file(str(path))
    except CheckpointError:
        raise
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: cannot read the tensors ({reason})") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{path}: tensor {name!r} holds NaN or infinite values; expected finite numbers "
                "(the training run diverged or the file was damaged)"
            )
        peak = float(tensor.abs().max()) if tensor.is_floating_point() and tensor.numel() else 0.0
        if peak > MAX_ABS_WEIGHT:
            raise CheckpointError(
                f"{path}: tensor {name!r} holds values up to {peak:.3g}; expected magnitudes of at most "
                f"{MAX_ABS_WEIGHT:g} (larger ones overflow the forward pass to NaN: the training run "
                "diverged or the file was damaged)"
            )
    return state
