"""Steps 2 and 3 of the checkpoint validator (`schema` is step 1): the safetensors header, then the
tensors' names, dtypes, shapes and values."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..core.backbones import geometry
from ..errors import CheckpointError
from .reading import MAX_WEIGHTS_BYTES, check_regular_file
from .schema import CONFIG_NAME, WEIGHTS_NAME

# Trained prompts and heads (and backbones) stay far below this; much larger finite values overflow
# the forward pass (attention scores, a layer norm's squares) to infinity and the answers to NaN.
MAX_ABS_WEIGHT = 1e6
FLOAT_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


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
