"""`ptuning info`: what a backbone + method costs in parameters and bytes."""

from __future__ import annotations

import argparse
import json

from ..core.config import METHODS
from ..methods import get_method

DESCRIPTION = """Print the parameter counts of a backbone with a prompt method and a head: trainable
parameters, total, their share, and the size of a prompt-only checkpoint next to the backbone's.

example: ptuning info --backbone minilm --method p-tuning-v2 --prefix-len 16"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone",
        default="minilm",
        help="minilm, mpnet-base, a model folder or a hub id (default: minilm)",
    )
    parser.add_argument(
        "--method", choices=METHODS, default="p-tuning-v2", help="prompt method (default: p-tuning-v2)"
    )
    parser.add_argument("--prefix-len", type=int, default=16, help="prompt length P (default: 16)")
    parser.add_argument(
        "--prefix-projection", action="store_true", help="reparameterize the prefix with an MLP"
    )
    parser.add_argument(
        "--prompt-layers", type=int, default=None, help="prompt only the top k layers (default: all)"
    )
    parser.add_argument(
        "--num-labels", type=int, default=2, help="classes of the classification head (default: 2)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    import tempfile

    from ..core.backbones import PACKAGED, geometry
    from ..core.config import PromptConfig
    from ..core.injection import supported_model_types
    from ..model import PromptModel
    from ..tasks import TaskSpec

    spec = TaskSpec("info", "classification", labels=tuple(str(i) for i in range(args.num_labels)))
    config = PromptConfig(
        method=args.method,
        prefix_len=args.prefix_len,
        prefix_projection=args.prefix_projection,
        prompt_layers=args.prompt_layers,
    )
    model, _ = PromptModel.from_backbone(args.backbone, spec, config)
    count = model.count_parameters()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = model.save_pretrained(tmp)
    g = geometry(model.backbone.config)
    info = {
        "backbone": args.backbone,
        "model_type": model.backbone.config.model_type,
        "layers": g.num_layers,
        "heads": g.num_heads,
        "hidden_size": g.hidden_size,
        "method": args.method,
        "prefix_len": args.prefix_len if get_method(args.method).has_prompt else 0,
        "trainable_params": count.trainable,
        "total_params": count.total,
        "backbone_params": count.backbone,
        "trainable_percent": round(100 * count.share, 4),
        **sizes,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        print(f"{key:>18}: {value:,}" if isinstance(value, int) else f"{key:>18}: {value}")
    print(f"{'known backbones':>18}: {', '.join(PACKAGED)}, a model folder, or a hub id")
    print(f"{'architectures':>18}: {', '.join(supported_model_types())}")
    return 0
