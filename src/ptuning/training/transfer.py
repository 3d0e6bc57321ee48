"""`--init-from DIR`: start a run from a trained prompt (the prefix or input prompt loaded, the head fresh).

DIR is a checkpoint folder (``ptuning_config.json`` + ``prompt.safetensors``) or the output folder
of a multi-task run (its ``multitask.json`` lists one sub-checkpoint per task, all holding the same
shared prompt: the sub-checkpoint of the task being trained is used when there is one, else the first).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_backbone, read_config
from ..errors import CheckpointError

MULTITASK_FILE = "multitask.json"


def prompt_checkpoint(directory, task: str | None = None) -> Path:
    """The checkpoint folder to take a prompt from (see the module docstring)."""
    directory = Path(directory)
    if (directory / CONFIG_NAME).is_file():
        return directory
    listing = directory / MULTITASK_FILE
    if listing.is_file():
        try:
            tasks = list(json.loads(listing.read_text())["tasks"])
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(f"{listing}: expected a JSON object with a 'tasks' list") from None
        chosen = task if task in tasks else tasks[0]
        return directory / chosen
    raise CheckpointError(
        f"--init-from {directory}: not a ptuning checkpoint ({CONFIG_NAME} missing) "
        f"nor a multi-task output folder ({MULTITASK_FILE} missing)"
    )


def init_prompt_from(model, directory) -> Path:
    """Load the trained prompt of `directory` into `model` (same backbone, method, length and layers);
    the head keeps its fresh initialisation. Returns the checkpoint folder used."""
    folder = prompt_checkpoint(directory, model.spec.name)
    config = read_config(folder)
    check_backbone(config, model.backbone_fingerprint, model.backbone_name, folder)
    saved, ours = config["prompt_config"], model.prompt_config
    for key in ("method", "prefix_len", "prompt_layers"):
        if saved.get(key) != getattr(ours, key):
            raise CheckpointError(
                f"--init-from {folder}: its prompt has {key} {saved.get(key)!r}, this run {getattr(ours, key)!r}; "
                f"train with the same --method, --prefix-len and --prompt-layers"
            )
    if model.prefix_encoder is not None:
        module, name = model.prefix_encoder, "prefix_encoder"
        if module.projection:
            raise CheckpointError(
                f"--init-from {folder}: a saved prefix is a plain table; train without --prefix-projection"
            )
    elif model.input_prompt is not None:
        module, name = model.input_prompt, "input_prompt"
    else:
        raise CheckpointError("--init-from needs a prompt method (not fine-tune)")
    state = load_file(str(folder / WEIGHTS_NAME))
    part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
    missing, unexpected = module.load_state_dict(part, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"--init-from {folder}: {name} does not match (missing {missing}, unexpected {unexpected})"
        )
    return folder
