"""Handcrafted prompts with a verbalizer (`--method handcrafted`): the zero/few-shot pole of the
comparison. `templates` parses templates and verbalizers, `scorer` scores label words through an
MLM head or by embedding similarity, `store` saves and loads the one-file checkpoint, `run` trains
(fits the bias), evaluates and predicts."""

from .scorer import HandcraftedScorer, fit_label_bias, load_scoring_backbone
from .store import is_handcrafted, load_handcrafted, save_handcrafted
from .templates import DEFAULT_PROMPTS, Template, Verbalizer, resolve_prompt

__all__ = [
    "is_handcrafted",
    "DEFAULT_PROMPTS",
    "HandcraftedScorer",
    "Template",
    "Verbalizer",
    "fit_label_bias",
    "load_handcrafted",
    "load_scoring_backbone",
    "resolve_prompt",
    "save_handcrafted",
]
