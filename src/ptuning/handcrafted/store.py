"""Handcrafted-prompt checkpoints: one small JSON file, `ptuning_config.json`.

It holds what every ptuning checkpoint's config holds (backbone name and fingerprint, task spec,
`prompt_config.method`) and, under "handcrafted", the template, the verbalizer, the scorer
("mlm" or "similarity"), its scale and the per-label bias (zero unless calibrated). No weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._version import __version__
from ..checkpoint import (
    CONFIG_NAME,
    FORMAT_VERSION,
    atomic_write_text,
    check_backbone,
    checkpoint_method,
    read_config_file,
)
from ..checkpoint import spec_from_config as _spec
from ..core.backbones import parameter_bytes
from ..errors import CheckpointError
from .scorer import HandcraftedScorer, load_scoring_backbone
from .templates import Template, Verbalizer

METHOD = "handcrafted"


def is_handcrafted(directory) -> bool:
    """True when the folder holds a handcrafted-prompt checkpoint (a template, no weights)."""
    method = checkpoint_method(directory)
    return method is not None and method.name == METHOD


def save_handcrafted(scorer: HandcraftedScorer, directory) -> dict[str, int]:
    """Write the checkpoint; returns its byte counts like `ptuning.checkpoint.files.save_checkpoint`."""
    directory = Path(directory)
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "ptuning_version": __version__,
        "backbone": scorer.backbone_name,
        "backbone_fingerprint": scorer.backbone_fingerprint,
        "backbone_model_type": scorer.model.config.model_type,
        "prompt_config": {"method": METHOD},
        "handcrafted": {
            "template": scorer.template.source,
            "verbalizer": scorer.verbalizer.to_dict(),
            "scoring": scorer.scoring,
            "scale": scorer.scale,
            "calibration": scorer.calibration,
            "bias": [float(b) for b in scorer.bias],
            "max_seq_length": scorer.max_length,
        },
        "task": asdict(scorer.spec),
    }
    text = json.dumps(config, indent=2) + "\n"
    atomic_write_text(directory / CONFIG_NAME, text)
    return {"checkpoint_bytes": len(text.encode()), "backbone_bytes": parameter_bytes(scorer.model)}


def load_handcrafted(
    directory, *, backbone: str | None = None, max_length: int | None = None
) -> HandcraftedScorer:
    """The scorer of a checkpoint, on its backbone (loaded by the saved name, or `backbone`)."""
    config = read_config_file(directory)  # JSON checks only: the weights schema is not a template's
    part = config.get("handcrafted")
    if config.get("prompt_config", {}).get("method") != METHOD or not isinstance(part, dict):
        raise CheckpointError(f"{directory} is not a handcrafted-prompt checkpoint")
    try:
        spec = _spec(config)
        template = Template.parse(part["template"], option=f"{directory}: template")
        verbalizer = Verbalizer.from_dict(part["verbalizer"]).for_task(
            spec, option=f"{directory}: verbalizer"
        )
        name = backbone or config["backbone"]
        model, tokenizer, scoring = load_scoring_backbone(name)
        if scoring != part["scoring"]:
            raise CheckpointError(
                f"checkpoint {directory} scores by {part['scoring']!r} but backbone {name!r} gives {scoring!r}"
            )
        scorer = HandcraftedScorer(
            model,
            tokenizer,
            spec,
            template,
            verbalizer,
            scoring=scoring,
            bias=part["bias"],
            calibration=part.get("calibration", "none"),
            scale=part["scale"],
            max_length=max_length or part.get("max_seq_length", 128),
            backbone_name=config["backbone"],
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{directory}/{CONFIG_NAME}: malformed handcrafted entry ({exc})") from None
    check_backbone(config, scorer.backbone_fingerprint, name, directory)
    return scorer
