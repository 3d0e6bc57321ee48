"""Prompt-only checkpoints: the prompt and the head as safetensors, plus a JSON config.

A checkpoint folder holds
  ptuning_config.json  method config, task spec, backbone name and fingerprint, byte counts
  prompt.safetensors   the prompt parameters and the head (and, for fine-tune, the backbone)
  tokenizer files      when the model carries its tokenizer (exported checkpoints only), so that
                       `AutoTokenizer.from_pretrained(folder)` works as on a Hugging Face model folder
The reparameterization MLP is folded into the plain prefix table on export (`fold=True`), so
inference needs no MLP; training checkpoints keep it (`fold=False`) so training can resume.
This module reads and writes files only: `PromptModel.from_pretrained` builds a model from them.
Every file is written to a temporary name and renamed, so a crash never leaves half a file; a
write error (a full disk) is one CheckpointWriteError naming the file, with no temporary left. A
run's final files (weights, config, train_config.json, metrics.json) are written into a staging
folder and renamed into place together (`staging_dir`, `commit_staged`), tied by one run id.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from safetensors.torch import save as safetensors_bytes

from .._version import __version__
from ..core.backbones import parameter_bytes
from ..data.inputs import InputFormat
from ..errors import CheckpointError
from ..methods import Method, find_method
from ..tasks import TaskSpec
from .schema import CONFIG_NAME, WEIGHTS_NAME, Checkpoint, read_config_file, validate_config
from .tensors import check_tensors, load_finite, read_header

FORMAT_VERSION = 1
RUN_ID = "run_id"  # the key, in ptuning_config.json, train_config.json and the weights' metadata
STAGING_PREFIX = ".staging-"


class CheckpointWriteError(CheckpointError):
    """A file that could not be written (a full disk, a quota, permissions): one line naming it."""


def _write_error(exc: OSError, path: Path) -> CheckpointWriteError:
    if exc.errno == errno.ENOSPC:
        return CheckpointWriteError(f"no space left on device writing {path}")
    if exc.errno == errno.EDQUOT:
        return CheckpointWriteError(f"disk quota exceeded writing {path}")
    return CheckpointWriteError(f"cannot write {path}: {exc.strerror or exc}")


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _stage(path: Path, data: bytes) -> str:
    """`data` written and synced to a temporary file beside `path`; its name. On any error the
    temporary file is removed and the error is one CheckpointWriteError naming `path`."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        _remove(tmp)
        raise _write_error(exc, path) from None
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _commit(tmp: str, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise _write_error(exc, path) from None


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, empty temporary file beside `path` (its descriptor and name), created with mode 0o666
    so that the kernel applies the process umask as `open()` does; `tempfile.mkstemp` would make it
    0o600 and hide a shared output folder from others, and reading the umask means setting it, which
    is not safe while other threads create files."""
    for _ in range(100):
        name = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    _commit(_stage(path, text.encode("utf-8")), path)


def checkpoint_state(model, *, fold: bool) -> dict:
    """Tensors a checkpoint holds: prompt modules (folded if asked), and the backbone for fine-tune."""
    modules = dict(model.prompt_modules())
    if fold and model.prefix_encoder is not None and model.prefix_encoder.projection:
        modules["prefix_encoder"] = model.prefix_encoder.fold()
    state = {}
    for prefix, module in modules.items():
        for key, tensor in module.state_dict().items():
            state[f"{prefix}.{key}"] = tensor.detach().cpu().contiguous()
    if not model.prompt_config.freezes_backbone:
        for key, tensor in model.backbone.state_dict().items():
            state[f"backbone.{key}"] = tensor.detach().cpu().contiguous()
    return state


def _tokenizer_files(model) -> dict[str, bytes]:
    """The files `model.tokenizer.save_pretrained` writes, by name (none when it has no tokenizer)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def save_checkpoint(
    model,
    directory,
    *,
    fold: bool = True,
    inputs: InputFormat | None = None,
    max_seq_length: int | None = None,
    run_id: str | None = None,
) -> dict[str, int]:
    """Write the checkpoint; `inputs` and `max_seq_length` record how the task's data was read in
    training, so that eval, predict and serve read it the same way by default. `run_id` (the run's
    `new_run_id`) goes into the config and the weights' metadata, and the loaders refuse a folder
    whose files carry different ones (`ptuning.checkpoint.schema.check_run_record`). Both files are
    staged (written and synced) first, then the old config is removed and both are renamed into
    place, so a full disk or a crash never leaves a loadable half checkpoint (new weights with an
    old config) or temporary files."""
    directory = Path(directory)
    state = checkpoint_state(model, fold=fold)
    metadata = {"format": "pt", **({RUN_ID: run_id} if run_id else {})}
    data = safetensors_bytes(state, metadata=metadata)
    weights = directory / WEIGHTS_NAME
    folded = model.prefix_encoder is not None and (fold or not model.prefix_encoder.projection)
    sizes = {"checkpoint_bytes": len(data), "backbone_bytes": parameter_bytes(model.backbone)}
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "ptuning_version": __version__,
        "backbone": model.backbone_name,
        "backbone_fingerprint": model.backbone_fingerprint,
        "backbone_model_type": model.backbone.config.model_type,
        "prompt_config": model.prompt_config.to_dict(),
        "prefix_folded": bool(folded),
        "task": asdict(model.spec),
        **sizes,
    }
    if inputs is not None:
        config["inputs"] = inputs.to_dict()
    if max_seq_length is not None:
        config["max_seq_length"] = int(max_seq_length)
    if run_id:
        config[RUN_ID] = run_id
    staged_tokenizer: list[tuple[str, Path]] = []
    try:  # an exported checkpoint carries its tokenizer; training checkpoints need none
        for name, content in (_tokenizer_files(model) if fold else {}).items():
            staged_tokenizer.append((_stage(directory / name, content), directory / name))
        staged_weights = _stage(weights, data)
    except BaseException:
        for tmp, _ in staged_tokenizer:
            _remove(tmp)
        raise
    try:
        staged_config = _stage(directory / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    except BaseException:
        _remove(staged_weights)
        for tmp, _ in staged_tokenizer:
            _remove(tmp)
        raise
    try:
        (directory / CONFIG_NAME).unlink(missing_ok=True)  # never the new weights beside an old config
    except OSError as exc:
        _remove(staged_weights)
        _remove(staged_config)
        for tmp, _ in staged_tokenizer:
            _remove(tmp)
        raise _write_error(exc, directory / CONFIG_NAME) from None
    for tmp, path in staged_tokenizer:
        _commit(tmp, path)
    _commit(staged_weights, weights)
    _commit(staged_config, directory / CONFIG_NAME)
    return sizes


def new_run_id() -> str:
    """A fresh id for one training run: its final checkpoint's files all carry it."""
    return secrets.token_hex(8)


def staging_dir(output: Path) -> Path:
    """A new, empty folder inside `output` where a run's final files are written before
    `commit_staged` moves them into place (on the same file system, so each move is a rename)."""
    output = Path(output)
    for stale in output.glob(f"{STAGING_PREFIX}*"):  # a commit a crash cut short: never loaded
        shutil.rmtree(stale, ignore_errors=True)
    folder = output / f"{STAGING_PREFIX}{secrets.token_hex(6)}"
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise _write_error(exc, folder) from None
    return folder


def commit_staged(staging: Path, output: Path) -> None:
    """Move every file of `staging` into `output`, the checkpoint's config last and the old config
    removed first: at every moment the folder holds either no loadable checkpoint or one whose
    files carry one run id (the loaders check it). Removes `staging`."""
    staging, output = Path(staging), Path(output)
    names = sorted(p.name for p in staging.iterdir())
    if CONFIG_NAME in names:
        names.remove(CONFIG_NAME)
        names.append(CONFIG_NAME)
        try:
            (output / CONFIG_NAME).unlink(missing_ok=True)
        except OSError as exc:
            raise _write_error(exc, output / CONFIG_NAME) from None
    for name in names:
        try:
            os.replace(staging / name, output / name)
        except OSError as exc:
            raise _write_error(exc, output / name) from None
    shutil.rmtree(staging, ignore_errors=True)


def checkpoint_method(directory) -> Method | None:
    """The registered method (`ptuning.methods`) that wrote the folder's checkpoint, read from its
    config without the schema checks; None where there is no readable config or no known method."""
    if isinstance(directory, Checkpoint):
        return directory.method
    try:
        config = read_config_file(directory)
    except CheckpointError:  # missing, not a regular file, not JSON
        return None
    prompt = config.get("prompt_config")
    return find_method(prompt.get("method")) if isinstance(prompt, dict) else None


def read_config(directory) -> dict[str, Any]:
    """The checkpoint's config, checked against the schema (`ptuning.checkpoint.schema.validate_config`)."""
    return validate_config(directory)


def recorded_inputs(directory) -> tuple[InputFormat, int | None]:
    """The input format and max sequence length a checkpoint was trained with. Checkpoints from
    before they were recorded: train_config.json beside them where present, else the defaults
    (`InputFormat()`, and None: the command's own default length). A loader that needs more of the
    checkpoint reads it once with `Checkpoint.read` and takes both from it."""
    checkpoint = Checkpoint.read(directory)
    return checkpoint.inputs, checkpoint.max_seq_length


def spec_from_config(config: dict[str, Any]) -> TaskSpec:
    known = {f.name for f in fields(TaskSpec)}
    task = {k: v for k, v in config["task"].items() if k in known}  # newer writers may add keys
    task["labels"] = tuple(task.get("labels", ()))
    task["notes"] = tuple(task.get("notes", ()))
    return TaskSpec(**task)


def check_backbone(config: dict[str, Any], backbone_fingerprint: str, backbone_label: str, directory) -> None:
    if config["backbone_fingerprint"] != backbone_fingerprint:
        raise CheckpointError(
            f"checkpoint {directory} was trained on backbone {config['backbone']!r} "
            f"(fingerprint {config['backbone_fingerprint']}), not on {backbone_label!r} "
            f"(fingerprint {backbone_fingerprint}); load it with the backbone it was trained on"
        )


def _expected_from_model(model) -> dict[str, tuple[int, ...]]:
    modules = dict(model.prompt_modules())
    if not model.prompt_config.freezes_backbone:
        modules["backbone"] = model.backbone
    return {
        f"{prefix}.{key}": tuple(tensor.shape)
        for prefix, module in modules.items()
        for key, tensor in module.state_dict().items()
    }


def load_state(model, directory, state: dict) -> None:
    """Put a checkpoint's tensors (`state`, already validated) into the prompt modules of `model`."""
    weights = Path(directory) / WEIGHTS_NAME
    modules = model.prompt_modules()
    if not model.prompt_config.freezes_backbone:
        modules["backbone"] = model.backbone
    for prefix, module in modules.items():
        part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        missing, unexpected = module.load_state_dict(part, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{weights}: {prefix} does not match the model (missing {missing}, unexpected {unexpected})"
            )


def load_training_state(model, directory) -> None:
    """Load a training checkpoint (unfolded) into an existing model, checking its backbone."""
    config = validate_config(directory)
    check_backbone(config, model.backbone_fingerprint, model.backbone_name, directory)
    check_tensors(directory, read_header(directory), _expected_from_model(model))
    load_state(model, directory, load_finite(directory))
