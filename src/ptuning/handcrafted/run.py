"""`ptuning train --method handcrafted`: zero-shot (no training data) or few-shot (a fitted label bias).

Nothing trains but, given examples, the per-label bias (`fit_label_bias`). We chose that bias over
contextual calibration (Zhao et al. 2021) because it uses the labels of the handful of examples,
where contextual calibration estimates the label prior from a content-free input ("N/A"): with the
similarity scorer of the sentence encoders the embedding of such an input is no neutral point. The
bias has one number per label, so a handful of examples cannot overfit it much (and it is L2-damped).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from transformers import set_seed

from ..checkpoint import atomic_write_text
from ..data import subsample
from ..data.inputs import parse_input
from ..data.load import EVAL_SUBSET_SEED, load_data
from ..decode import format_outputs
from ..errors import DataError, UserError
from ..metrics import compute_metrics
from ..tasks import TaskSpec, gives_pairs
from ..training.defaults import for_task, task_kind
from ..wording import plural
from .scorer import HandcraftedScorer
from .store import load_handcrafted, save_handcrafted
from .templates import resolve_prompt


def evaluate_examples(
    scorer: HandcraftedScorer, examples: list[dict], batch_size: int = 64
) -> dict[str, float]:
    """Metrics of the scorer on labelled examples (and the mean cross-entropy as `loss`)."""
    if not examples:
        raise DataError(f"task {scorer.spec.name!r}: no evaluation examples")
    logits, _ = scorer.logits(examples, batch_size)
    labels = np.array([scorer.spec.labels.index(ex["label"]) for ex in examples])
    groups = [ex.get("group") for ex in examples] if "group" in examples[0] else None
    metrics = compute_metrics(scorer.spec, logits.argmax(axis=1).tolist(), labels.tolist(), groups=groups)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {"loss": float(-log_probs[np.arange(len(labels)), labels].mean()), **metrics}


def train_handcrafted(cfg, callbacks=None) -> dict[str, Any]:
    """Build the scorer, fit the bias on the training subset if any, evaluate, save; as `training.train`.
    `callbacks` (the Trainer's) are not called: nothing trains by gradient."""
    if cfg.prompt.pair_encoding != "joint":  # the template holds both texts: one sequence
        raise UserError(
            f"--pair-encoding {cfg.prompt.pair_encoding} is for a prompt model's head; handcrafted fills "
            "both texts of a pair into one template"
        )
    set_seed(cfg.seed)
    output = Path(cfg.output_dir)
    data = load_data(cfg)
    spec: TaskSpec = data.spec
    cfg = for_task(cfg, task_kind(spec.task_type, data.train or data.validation))  # max_seq_length
    template, verbalizer = resolve_prompt(spec, cfg.template, cfg.verbalizer)
    template.check(spec, gives_pairs(data.validation or data.train))
    train_examples = subsample(data.train, cfg.max_train_samples, cfg.seed)
    eval_examples = subsample(data.validation, cfg.max_eval_samples, EVAL_SUBSET_SEED)
    scorer = HandcraftedScorer.from_backbone(
        cfg.backbone, spec, template, verbalizer, max_length=cfg.max_seq_length
    )
    atomic_write_text(output / "train_config.json", json.dumps(cfg.to_dict(), indent=2, default=str) + "\n")
    shot = (
        f"few-shot, a label bias fitted on {plural(len(train_examples), 'example')}"
        if train_examples
        else "zero-shot"
    )
    print(
        f"task {spec.name} ({spec.task_type}), backbone {cfg.backbone}, method handcrafted ({shot}), "
        f"scoring {scorer.scoring}: template {template.source!r}, verbalizer {verbalizer.to_string()}; "
        f"eval {plural(len(eval_examples), 'example')}, max_seq_length {cfg.max_seq_length}"
    )
    for note in [*spec.notes, *scorer.notes]:
        print(f"note: {note}")
    start = time.perf_counter()
    if train_examples:
        scorer.calibrate(train_examples, cfg.eval_batch_size)
    train_seconds = time.perf_counter() - start
    validation = evaluate_examples(scorer, eval_examples, cfg.eval_batch_size)
    sizes = save_handcrafted(scorer, output)
    total = sum(p.numel() for p in scorer.model.parameters())
    metrics = {
        "task": spec.name,
        "task_type": spec.task_type,
        "method": "handcrafted",
        "backbone": cfg.backbone,
        "trainable_params": scorer.trainable_params,
        "total_params": total,
        "trainable_share": scorer.trainable_params / total,
        "train_seconds": round(train_seconds, 2),
        "train_examples": len(train_examples),
        "eval_examples": len(eval_examples),
        "global_steps": 0,
        "best_checkpoint": None,
        **sizes,
        "metric": spec.metric,
        "validation": validation,
        "notes": [*spec.notes, *scorer.notes],
        "handcrafted": {
            "template": template.source,
            "verbalizer": verbalizer.to_dict(),
            "scoring": scorer.scoring,
            "calibration": scorer.calibration,
            "bias": [float(b) for b in scorer.bias],
        },
    }
    atomic_write_text(output / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


class HandcraftedEvaluator:
    """`ptuning.training.evaluation.evaluate_checkpoint`'s scoring of a handcrafted checkpoint."""

    def __init__(self, scorer: HandcraftedScorer) -> None:
        self.scorer = scorer
        self.spec = scorer.spec

    @classmethod
    def from_checkpoint(cls, checkpoint, max_seq_length: int) -> HandcraftedEvaluator:
        return cls(load_handcrafted(checkpoint, max_length=max_seq_length))

    def score(self, examples: list[dict], batch_size: int, bf16: bool | None = None) -> dict[str, float]:
        """`bf16` is ignored: the template scorer runs in float32."""
        return evaluate_examples(self.scorer, examples, batch_size)


class HandcraftedPredictor:
    """`ptuning predict` for a handcrafted checkpoint: the answers of `ptuning.inference.Predictor`."""

    def __init__(self, scorer: HandcraftedScorer, *, batch_size: int = 32) -> None:
        self.scorer = scorer
        self.spec = scorer.spec
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(
        cls, path, *, max_length: int | None = None, batch_size: int = 32, bf16: bool | None = None
    ) -> HandcraftedPredictor:
        """`bf16` is ignored: the template scorer runs in float32 (it trains nothing)."""
        return cls(load_handcrafted(path, max_length=max_length), batch_size=batch_size)

    def predict(self, inputs) -> list[dict[str, Any]]:
        examples = [parse_input(self.spec, item, i) for i, item in enumerate(inputs)]
        logits, flags = self.scorer.logits(examples, self.batch_size)
        return format_outputs(self.spec, examples, [None] * len(examples), list(logits), flags)
