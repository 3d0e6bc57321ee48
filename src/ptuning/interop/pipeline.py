"""`transformers.pipeline` on a PromptModel: `prompt_pipeline(model)` picks the pipeline task from the
model's task type and passes its tokenizer.

A PromptModel already runs in `transformers.pipeline(task, model=model, tokenizer=tokenizer)`
itself; this helper also keeps transformers from logging that "the model 'PromptModel' is not
supported" (its check reads class names of the built-in task models; the pipeline runs regardless),
and gives a model that reads text pairs apart the pipeline that tokenizes them so.
"""

from __future__ import annotations

from typing import Any

PIPELINE_TASKS: dict[str, str] = {
    "classification": "text-classification",
    "regression": "text-classification",
    "token_classification": "token-classification",
}  # transformers 5.24 removed the question-answering pipeline; Predictor answers QA


def separate_pairs_pipeline() -> type:
    """The text-classification pipeline of a model that reads the two texts of a pair apart
    (`PromptConfig.pair_encoding` "separate"): it takes ``{"text": a, "text_pair": b}`` and
    tokenizes each text on its own, as the model's features do, where the stock pipeline would
    tokenize the pair as one sequence."""
    from transformers import TextClassificationPipeline

    from ..core.config import PAIR_PREFIX

    class SeparatePairsPipeline(TextClassificationPipeline):
        def preprocess(self, inputs, **tokenizer_kwargs):
            if (
                isinstance(inputs, list)
                and len(inputs) == 1
                and isinstance(inputs[0], list)
                and len(inputs[0]) == 2
            ):
                inputs = {"text": inputs[0][0], "text_pair": inputs[0][1]}  # the stock pipeline's old form
            if not isinstance(inputs, dict) or inputs.get("text_pair") is None:
                raise ValueError(
                    'this model reads text pairs, each text apart: pass {"text": ..., "text_pair": ...}'
                )
            tokenizer_kwargs.setdefault("truncation", True)
            first = self.tokenizer(inputs["text"], return_tensors="pt", **tokenizer_kwargs)
            second = self.tokenizer(inputs["text_pair"], return_tensors="pt", **tokenizer_kwargs)
            return {**first, **{PAIR_PREFIX + key: value for key, value in second.items()}}

    return SeparatePairsPipeline


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
        kwargs.setdefault("pipeline_class", separate_pairs_pipeline())
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
