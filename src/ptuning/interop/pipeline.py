"""`transformers.pipeline` on a PromptModel: `prompt_pipeline(model)` picks the pipeline task from the
model's task type and passes its tokenizer.

A PromptModel already runs in `transformers.pipeline(task, model=model, tokenizer=tokenizer)`
itself; this helper also keeps transformers from logging that "the model 'PromptModel' is not
supported" (its check reads class names of the built-in task models; the pipeline runs regardless).
"""

from __future__ import annotations

from typing import Any

PIPELINE_TASKS: dict[str, str] = {
    "classification": "text-classification",
    "regression": "text-classification",
    "token_classification": "token-classification",
}  # transformers 5.24 removed the question-answering pipeline; Predictor answers QA


def prompt_pipeline(model, tokenizer=None, **kwargs: Any):
    """A transformers pipeline of the model's task (`tokenizer` None: `model.tokenizer`); `kwargs`
    go to `transformers.pipeline` (e.g. `aggregation_strategy="simple"` for token classification)."""
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    task = PIPELINE_TASKS.get(model.spec.task_type)
    if task is None:
        raise ValueError(
            f"no transformers pipeline for task type {model.spec.task_type!r}; use ptuning.Predictor "
            f"(pipelines: {', '.join(sorted(PIPELINE_TASKS))})"
        )
    if getattr(model.prompt_config, "pair_encoding", "joint") == "separate":
        raise ValueError(
            "a transformers pipeline tokenizes a text pair as one sequence, and this model encodes the "
            "two texts separately (pair_encoding 'separate'): use ptuning.Predictor"
        )
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if tokenizer is None:
        raise ValueError("the model carries no tokenizer: pass tokenizer=...")
    logger = hf_logging.get_logger("transformers.pipelines.base")
    level = logger.level
    logger.setLevel(hf_logging.CRITICAL)  # the class-name check only; real errors still raise
    try:
        return pipeline(task, model=model, tokenizer=tokenizer, **kwargs)
    finally:
        logger.setLevel(level)
