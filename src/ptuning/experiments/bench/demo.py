"""The tiny demo checkpoints of every task type (random prompts and heads on a tiny BERT) and random
inputs for them: what `load_test` and the serving tests run on."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

# (task name, task spec kwargs, prompt config kwargs) of the tiny demo checkpoints
DEMO_TASKS: list[tuple[str, dict, dict]] = [
    ("sentiment", {"task_type": "classification", "labels": ("negative", "positive")}, {"prefix_len": 4}),
    (
        "topic",
        {"task_type": "classification", "labels": ("world", "sports", "business")},
        {"prefix_len": 8, "prompt_layers": 2, "pooling": "mean"},
    ),
    ("similarity", {"task_type": "regression"}, {"method": "prefix-tuning", "prefix_len": 3}),
    (
        "copa",
        {"task_type": "multiple_choice", "labels": ("0", "1"), "num_choices": 2},
        {"prefix_len": 5},
    ),
    (
        "ner",
        {"task_type": "token_classification", "labels": ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")},
        {"prefix_len": 6},
    ),
    ("squad", {"task_type": "question_answering"}, {"prefix_len": 4}),
    (
        "intent",
        {"task_type": "classification", "labels": ("ask", "tell")},
        {"method": "prompt-tuning", "prefix_len": 4},
    ),
]

WORDS = [
    "the",
    "a",
    "film",
    "movie",
    "plot",
    "was",
    "dull",
    "gripping",
    "funny",
    "long",
    "short",
    "actor",
    "scene",
    "John",
    "Mary",
    "Paris",
    "London",
    "went",
    "home",
    "to",
    "from",
    "and",
    "but",
    "very",
    "not",
    "quite",
    "with",
    "story",
    "ending",
    "music",
    "great",
    "poor",
]


def make_checkpoints(
    folder: str | Path, backbone_dir: str | Path | None = None, seed: int = 0
) -> dict[str, Path]:
    """Tiny checkpoints of every task type (and three methods) on one tiny random BERT.

    Their prompts and heads are random (no training): enough to check that answers are right.
    Returns {task name: checkpoint folder}."""
    import torch

    from ptuning.backbones import load_backbone
    from ptuning.config import PromptConfig
    from ptuning.data.spec import TaskSpec
    from ptuning.modeling import PromptModel
    from ptuning.testing import save_tiny_backbone

    folder = Path(folder)
    if backbone_dir is None:
        backbone_dir = save_tiny_backbone("bert", folder / "tiny-bert")
    backbone, _ = load_backbone(str(backbone_dir))
    torch.manual_seed(seed)
    paths = {}
    for name, spec_kwargs, config_kwargs in DEMO_TASKS:
        model = PromptModel(
            backbone,
            TaskSpec(name, **spec_kwargs),
            PromptConfig(**config_kwargs),
            backbone_name=str(backbone_dir),
        )
        with torch.no_grad():
            for param in model.head.parameters():
                param.normal_(0, 0.5)
            if model.input_prompt is not None:
                model.input_prompt.embedding.add_(torch.randn_like(model.input_prompt.embedding))
        paths[name] = folder / name
        model.save_pretrained(paths[name])
    return paths


def _sentence(rng: random.Random, low: int = 3, high: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def make_input(task_type: str, rng: random.Random) -> Any:
    if task_type in ("classification", "regression"):
        if rng.random() < 0.3:
            return _sentence(rng)
        return (
            {"text": _sentence(rng), "text_pair": _sentence(rng)}
            if rng.random() < 0.5
            else {"text": _sentence(rng)}
        )
    if task_type == "multiple_choice":
        return {"context": _sentence(rng), "choices": [_sentence(rng, 2, 5), _sentence(rng, 2, 5)]}
    if task_type == "token_classification":
        return {"tokens": _sentence(rng).split()} if rng.random() < 0.5 else _sentence(rng)
    return {"question": _sentence(rng, 3, 6) + "?", "context": _sentence(rng, 20, 150)}
