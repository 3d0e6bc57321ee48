"""Configuration of a prompt method, as a dataclass that round-trips through JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

METHODS: tuple[str, ...] = ("p-tuning-v2", "prefix-tuning", "prompt-tuning", "fine-tune")
# A handcrafted template + verbalizer (ptuning.handcrafted): no prompt model, so not a PromptConfig method.
HANDCRAFTED = "handcrafted"
TRAIN_METHODS: tuple[str, ...] = (*METHODS, HANDCRAFTED)

# Learning rates in the ranges the papers used (P-Tuning v2: 5e-3..1e-2; fine-tuning 1e-5..5e-5).
DEFAULT_LEARNING_RATES: dict[str, float] = {
    "p-tuning-v2": 1e-2,
    "prefix-tuning": 1e-3,
    "prompt-tuning": 3e-2,
    "fine-tune": 3e-5,
    "handcrafted": 0.0,  # nothing trains by gradient (the few-shot label bias is fitted by L-BFGS)
}


def default_learning_rate(method: str, prefix_projection: bool = False) -> float:
    """The learning rate a method trains with unless one is given.

    A prefix made by the reparameterization MLP moves far more per step than a plain table (each
    output mixes 512 hidden units): at 5e-3 prefix tuning did not learn a toy task, at 1e-3 it did.
    So any reparameterized prefix trains at prefix tuning's rate.
    """
    if method != "fine-tune" and prefix_projection:
        return DEFAULT_LEARNING_RATES["prefix-tuning"]
    return DEFAULT_LEARNING_RATES[method]


@dataclass
class PromptConfig:
    """How the frozen backbone is prompted.

    method: p-tuning-v2 (deep prefix keys/values in every layer), prefix-tuning (the same,
        always reparameterized by an MLP, Li & Liang 2021), prompt-tuning (P vectors at the
        input embeddings only, Lester et al. 2021 / P-tuning v1), fine-tune (all weights train).
    prefix_len: P, the number of virtual tokens.
    prefix_projection: reparameterize the prefix through Embedding(P, H) -> Linear(H, h) -> Tanh
        -> Linear(h, L*2*H). Forced on for prefix-tuning.
    projection_hidden: h, the MLP's hidden width.
    prompt_dropout: dropout on the prefix keys/values (or on the input prompt).
    prompt_layers: how many of the top layers get a prefix (None = all layers).
    init_std: standard deviation of the prefix table's normal initialisation.
    pooling: how sequence-level heads read the encoder: "cls" (first token) or "mean".
    head_dropout: dropout before the linear head.
    """

    method: str = "p-tuning-v2"
    prefix_len: int = 16
    prefix_projection: bool = False
    projection_hidden: int = 512
    prompt_dropout: float = 0.1
    prompt_layers: int | None = None
    init_std: float = 1.0
    pooling: str = "cls"
    head_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.method == "prefix-tuning":
            self.prefix_projection = True
        if self.method != "fine-tune" and self.prefix_len < 1:
            raise ValueError(f"prefix_len must be >= 1, got {self.prefix_len}")
        if self.prompt_layers is not None and self.prompt_layers < 1:
            raise ValueError(f"prompt_layers must be >= 1 or None, got {self.prompt_layers}")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")

    @property
    def deep(self) -> bool:
        """True for methods that put a prefix in the attention of every (prompted) layer."""
        return self.method in ("p-tuning-v2", "prefix-tuning")

    @property
    def freezes_backbone(self) -> bool:
        return self.method != "fine-tune"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
