"""What a task looks like to Hugging Face code: the config a task model of it would carry."""

from __future__ import annotations

import copy

from transformers import PretrainedConfig

from ..tasks import TaskSpec

# ptuning task type -> transformers' `problem_type` (what the text-classification pipeline reads
# to pick softmax or no function); the other task types have none
PROBLEM_TYPES = {"classification": "single_label_classification", "regression": "regression"}


def task_config(backbone_config: PretrainedConfig, spec: TaskSpec) -> PretrainedConfig:
    """A copy of the backbone's config carrying the task's labels (`id2label`, `label2id`,
    `num_labels`, `problem_type`), as a Hugging Face task model's config does: what
    `transformers.pipeline` reads to name its answers. A copy, so the backbone's own config (and
    so its fingerprint, which checkpoints record) stays as it was."""
    config = copy.deepcopy(backbone_config)
    if spec.task_type in ("classification", "token_classification") and spec.labels:
        config.id2label = dict(enumerate(spec.labels))
        config.label2id = {name: i for i, name in enumerate(spec.labels)}
    else:
        config.num_labels = spec.num_labels
    config.problem_type = PROBLEM_TYPES.get(spec.task_type)
    config.architectures = ["PromptModel"]
    return config
