"""A served task (`ServedTask`: its prompt model on the shared backbone, its predictor, its folded
prefix table), a request prepared for it (`PreparedRequest`), and which checkpoints can be served
(`check_servable`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import Checkpoint
from ..core.injection import PrefixInjector
from ..errors import CheckpointError
from ..inference import Predictor
from ..methods import find_method
from ..model import PromptModel
from ..tasks import TaskSpec

DEFAULT_MAX_LENGTH = 256  # tokens per sequence for checkpoints that did not record their length
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(eq=False)
class ServedTask:
    """One task of the server: its prompt model (sharing the backbone), its predictor and prefix table."""

    name: str
    path: str
    model: PromptModel
    predictor: Predictor
    # Deep prompts: keys and values (num_layers, heads, P, head_dim), zero for layers not prompted.
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    layers: tuple[int, ...] = ()

    @property
    def spec(self) -> TaskSpec:
        return self.model.spec

    @property
    def method(self) -> str:
        return self.model.prompt_config.method

    @property
    def deep(self) -> bool:
        return self.keys is not None

    @property
    def prompt_length(self) -> int:
        return self.model.prompt_config.prefix_len

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task_type": self.spec.task_type,
            "labels": list(self.spec.labels),
            "num_choices": self.spec.num_choices or None,
            "prompt_length": self.prompt_length,
            "method": self.method,
            "prompted_layers": list(self.layers) if self.deep else [],
            "max_length": self.predictor.max_length,
            "checkpoint": self.path,
        }


@dataclass
class PreparedRequest:
    """A task's inputs after parsing and tokenization: what the worker runs."""

    task: ServedTask
    examples: list[dict]
    features: list[dict]
    flags: list[bool]

    @property
    def num_rows(self) -> int:
        """Model rows (sequences) this request costs: one per feature, one per choice for multiple choice."""
        head = self.task.model.head
        return sum(head.num_rows(f) for f in self.features)


def _checkpoint_label(path: str, name: str | None) -> str:
    return f"{path} (task {name!r})" if name else str(path)


@torch.no_grad()
def set_prefix_table(task: ServedTask, model: PromptModel) -> None:
    encoder = model.prefix_encoder.eval()
    prefix = encoder(1)  # {layer: LayerPrefix (1, heads, P, head_dim)}
    num_layers = PrefixInjector.attach(model.backbone).num_layers
    sample = next(iter(prefix.values())).key[0]
    keys = sample.new_zeros(num_layers, *sample.shape)
    values = sample.new_zeros(num_layers, *sample.shape)
    for layer, part in prefix.items():
        keys[layer] = part.key[0]
        values[layer] = part.value[0]
    task.keys, task.values, task.layers = keys, values, tuple(sorted(prefix))


def check_servable(path: str | Path) -> Checkpoint:
    """The checkpoint, its config read and checked once, or a CheckpointError saying why `ptuning
    serve` cannot serve it."""
    if not Path(path).is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a folder")
    checkpoint = Checkpoint.read(path)
    config = checkpoint.config
    for key in ("backbone", "backbone_fingerprint", "prompt_config", "task"):
        if key not in config:
            raise CheckpointError(f"checkpoint {path}: {key!r} is missing from its config")
    method = find_method(config["prompt_config"].get("method"))
    if method is not None and not method.servable:
        raise CheckpointError(
            f"checkpoint {path} is a {method.name} checkpoint: {method.serve_refusal}; serve it alone "
            "with `ptuning predict`"
        )
    return checkpoint
