"""Tiny randomly initialised encoders of every supported architecture, for tests and examples.

`tiny_backbone(model_type)` builds one in memory; `save_tiny_backbone(model_type, folder)` writes a
local model folder (with the MiniLM WordPiece tokenizer when it is installed, so the CLI can load
it by path like any other backbone); `make_checkpoints(folder)` saves tiny checkpoints of every task
type on a tiny BERT (what the serving tests and the load test run on).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModel,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    MPNetConfig,
    PretrainedConfig,
    RobertaConfig,
)

TINY_MODEL_TYPES = ("bert", "roberta", "electra", "distilbert", "deberta-v2", "mpnet")


def tiny_config(model_type: str, vocab_size: int = 1000) -> PretrainedConfig:
    common = dict(
        vocab_size=vocab_size,
        max_position_embeddings=128,
        attention_probs_dropout_prob=0.0,
        hidden_dropout_prob=0.0,
    )
    size = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
    if model_type == "bert":
        return BertConfig(**common, **size)
    if model_type == "roberta":
        return RobertaConfig(**common, **size, pad_token_id=1)
    if model_type == "electra":
        return ElectraConfig(**common, **size, embedding_size=32)
    if model_type == "distilbert":
        return DistilBertConfig(
            vocab_size=vocab_size,
            max_position_embeddings=128,
            dim=32,
            n_layers=3,
            n_heads=4,
            hidden_dim=64,
            dropout=0.0,
            attention_dropout=0.0,
        )
    if model_type == "deberta-v2":
        return DebertaV2Config(
            **common,
            **size,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=16,
            max_relative_positions=64,
            position_biased_input=False,
            type_vocab_size=0,
        )
    if model_type == "mpnet":
        return MPNetConfig(**common, **size, relative_attention_num_buckets=32)
    raise ValueError(f"no tiny config for {model_type!r}; known: {', '.join(TINY_MODEL_TYPES)}")


def tiny_backbone(model_type: str, vocab_size: int = 1000, seed: int = 0):
    torch.manual_seed(seed)
    config = tiny_config(model_type, vocab_size)
    attn = "eager" if model_type in ("deberta-v2", "mpnet") else "sdpa"
    return AutoModel.from_config(config, attn_implementation=attn).eval()


def tiny_mlm(model_type: str, vocab_size: int = 1000, seed: int = 0):
    """A tiny random encoder with its masked-language-model head (`AutoModelForMaskedLM`)."""
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(seed)
    return AutoModelForMaskedLM.from_config(tiny_config(model_type, vocab_size)).eval()


def save_tiny_backbone(model_type: str, folder: str | Path, seed: int = 0, *, mlm: bool = False) -> Path:
    """A local model folder with a tiny random encoder and the MiniLM tokenizer (vocab 30,522);
    `mlm=True` saves it with a masked-LM head (what `--method handcrafted` scores with)."""
    from transformers import AutoTokenizer

    from .core.backbones import resolve

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm"))
    build = tiny_mlm if mlm else tiny_backbone
    model = build(model_type, vocab_size=len(tokenizer), seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


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


def make_checkpoints(
    folder: str | Path, backbone_dir: str | Path | None = None, seed: int = 0
) -> dict[str, Path]:
    """Tiny checkpoints of every task type (and three methods) on one tiny random BERT.

    Their prompts and heads are random (no training): enough to check that answers are right.
    Returns {task name: checkpoint folder}."""
    from .core.backbones import load_backbone
    from .core.config import PromptConfig
    from .model import PromptModel
    from .tasks import TaskSpec

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
