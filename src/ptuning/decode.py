"""Model outputs -> answers: what `ptuning predict` prints and `ptuning serve` answers (see
`ptuning.inference` for the output forms). Each task type's head decodes its own logits
(`ptuning.heads.Head.decode`); shared by the prompt models' `Predictor` and the handcrafted
prompts' predictor, so neither imports the other."""

from __future__ import annotations

from typing import Any

from .heads import head_class
from .tasks import TaskSpec


def format_outputs(spec: TaskSpec, examples, features, logits, flags) -> list[dict[str, Any]]:
    """Model outputs (aligned with `features`) -> one answer dict per example."""
    results = head_class(spec.task_type).decode(spec, examples, features, logits)
    for result, flag in zip(results, flags, strict=True):
        result["truncated"] = flag
    return results
