"""Prompt-only checkpoints: the prompt and the head as safetensors, plus a JSON config.

A checkpoint folder holds
  ptuning_config.json  method config, task spec, backbone name and fingerprint, byte counts
  prompt.safetensors   the prompt parameters and the head (and, for fine-tune, the backbone)
The reparameterization MLP is folded into the plain prefix table on export (`fold=True`), so
inference needs no MLP; training checkpoints keep it (`fold=False`) so training can resume.
Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from . import __version__
from .backbones import fingerprint, load_backbone, parameter_bytes
from .config import PromptConfig
from .data.spec import TaskSpec

CONFIG_NAME = "ptuning_config.json"
WEIGHTS_NAME = "prompt.safetensors"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed, or made for another backbone."""


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _atomic_save_tensors(tensors: dict, path: Path, metadata: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


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


def save_checkpoint(model, directory, *, fold: bool = True) -> dict[str, int]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = checkpoint_state(model, fold=fold)
    weights = directory / WEIGHTS_NAME
    _atomic_save_tensors(state, weights, {"format": "pt"})
    folded = model.prefix_encoder is not None and (fold or not model.prefix_encoder.projection)
    sizes = {"checkpoint_bytes": weights.stat().st_size, "backbone_bytes": parameter_bytes(model.backbone)}
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
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return sizes


def read_config(directory) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a ptuning checkpoint: {CONFIG_NAME} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


def spec_from_config(config: dict[str, Any]) -> TaskSpec:
    task = dict(config["task"])
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


def load_checkpoint(directory, *, backbone=None):
    """(PromptModel in eval mode, tokenizer or None).

    `backbone`: None (load by the saved name), a name, or a loaded model.
    """
    from .modeling import PromptModel

    config = read_config(directory)
    if config.get("prompt_config", {}).get("method") == "handcrafted":
        raise CheckpointError(
            f"{directory} is a handcrafted-prompt checkpoint (a template, no prompt weights); load it with "
            "ptuning.handcrafted.load_handcrafted"
        )
    tokenizer = None
    if backbone is None or isinstance(backbone, str | os.PathLike):
        name = str(backbone) if backbone is not None else config["backbone"]
        backbone, tokenizer = load_backbone(name)
        label = name
    else:
        label = getattr(backbone.config, "_name_or_path", "") or backbone.config.model_type
    backbone_print = fingerprint(backbone)
    check_backbone(config, backbone_print, label, directory)
    model = PromptModel(
        backbone,
        spec_from_config(config),
        PromptConfig.from_dict(config["prompt_config"]),
        backbone_name=config["backbone"],
        backbone_fingerprint=backbone_print,
    )
    if config.get("prefix_folded"):
        model.fold_prefix()
    _load_weights(model, directory)
    return model.eval(), tokenizer  # ready for inference, as Hugging Face's from_pretrained


def _load_weights(model, directory) -> None:
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {WEIGHTS_NAME}")
    state = load_file(str(weights))
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
    config = read_config(directory)
    check_backbone(config, model.backbone_fingerprint, model.backbone_name, directory)
    _load_weights(model, directory)
