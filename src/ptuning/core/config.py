"""Configuration of a prompt method, as a dataclass that round-trips through JSON."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from .limits import check_setting

METHODS: tuple[str, ...] = (
    "p-tuning-v2",
    "prefix-tuning",
    "prompt-tuning",
    "fine-tune",
)  # == get_args(Method)
DEFAULT_METHOD = "p-tuning-v2"
DEFAULT_BACKBONE = "minilm"  # ptuning.core.backbones.BUILTIN_BACKBONES
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


Method = Literal["p-tuning-v2", "prefix-tuning", "prompt-tuning", "fine-tune"]
Pooling = Literal["mean", "cls"]
PrefixInit = Literal["random", "vocab"]


def option(default: Any = MISSING, help: str = "", *, group: str = "", **cli: Any) -> Any:
    """A dataclass field whose metadata documents it: `help` (the text of its command-line option;
    "(default: ...)" is appended from the field's default), the option `group`, and command-line
    details in `cli` (`flag`, `dest`, `metavar`, `default_text`, `cli=False` to leave it off the
    command line). `ptuning.commands.fields` turns such fields into argparse options, so a default
    lives in one place: here."""
    metadata = {"help": help, "group": group, **cli}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class PromptConfig:
    """How the frozen backbone is prompted (each field's help text says what it does).

    >>> from ptuning import PromptConfig
    >>> PromptConfig(method="prefix-tuning", prefix_len=16).method
    'prefix-tuning'
    """

    method: Method = option(
        DEFAULT_METHOD,
        "p-tuning-v2: deep prefix keys/values in every layer; prefix-tuning: the same, always "
        "reparameterized by an MLP (Li & Liang 2021); prompt-tuning: P vectors at the input only "
        "(Lester et al. 2021, P-tuning v1); fine-tune: every weight trains",
        cli=False,  # TrainConfig.method is the option (it also offers handcrafted)
    )
    prefix_len: int = option(16, "prompt length P (virtual tokens)", group="prompt")
    prefix_projection: bool = option(
        False,
        "reparameterize the prefix through Embedding(P, H) -> Linear(H, h) -> Tanh -> Linear(h, L*2*H) "
        "(forced on for prefix-tuning)",
        group="prompt",
    )
    projection_hidden: int = option(512, "MLP width h of --prefix-projection", group="prompt")
    prompt_dropout: float = option(
        0.1, "dropout on the prefix keys/values (or the input prompt)", group="prompt"
    )
    prompt_dropout_per_example: bool = option(
        False,
        "draw the prompt dropout mask per example, as the reference implementation does, instead of "
        "one mask for the whole batch",
        group="prompt",
    )
    prompt_layers: int | None = option(
        None, "prompt only the top k layers", group="prompt", metavar="K", default_text="all"
    )
    prefix_init: PrefixInit = option(
        "random",
        "how a deep prefix table starts: random normal (std --init-std), or the keys and values the "
        "backbone computes for P random vocabulary tokens (Li & Liang 2021; not with --prefix-projection)",
        group="prompt",
    )
    init_std: float = option(1.0, "standard deviation of the random prefix table", group="prompt")
    pooling: Pooling = option(
        "mean",
        "what sentence-level heads read: the mean of the token states, or the first token as in the "
        "paper (both built-in backbones are sentence encoders trained with mean pooling; on SST-2 mean "
        "gave 82.8%% against 75.9%% for cls in the main job)",
        group="prompt",
    )
    head_dropout: float = option(0.1, "dropout before the linear head", group="prompt")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.method == "prefix-tuning" and self.prefix_init == "vocab":
            raise ValueError(
                "prefix_init 'vocab' sets a plain prefix table: prefix-tuning always has the MLP"
            )
        if self.method == "prefix-tuning":
            self.prefix_projection = True
        if self.method != "fine-tune":  # fine-tune has no prompt: its prefix_len is not used
            check_setting("prefix_len", self.prefix_len)
        if self.prompt_layers is not None:
            check_setting("prompt_layers", self.prompt_layers)
        for name, allowed in (("method", Method), ("pooling", Pooling), ("prefix_init", PrefixInit)):
            if getattr(self, name) not in get_args(allowed):
                raise ValueError(
                    f"{name} must be one of {', '.join(get_args(allowed))}, got {getattr(self, name)!r}"
                )
        if self.prefix_init == "vocab" and self.prefix_projection:
            raise ValueError("prefix_init 'vocab' sets a plain prefix table: not with prefix_projection")

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
