"""Configuration of a prompt method, as a dataclass that round-trips through JSON."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from ..methods import get_method, method_names
from .limits import check_setting

# the methods of a `PromptConfig` (those trained as a `PromptModel`), in registration order
METHODS: tuple[str, ...] = method_names(prompt_model=True)
DEFAULT_METHOD = "p-tuning-v2"
DEFAULT_BACKBONE = "minilm"  # ptuning.core.backbones.BUILTIN_BACKBONES
# the prompt length of a model built by hand from a PromptConfig that sets none
STANDALONE_PREFIX_LEN = 16
# every method `ptuning train` offers (a handcrafted template + verbalizer has no prompt model)
TRAIN_METHODS: tuple[str, ...] = method_names()
DEFAULT_LEARNING_RATES: dict[str, float] = {name: get_method(name).learning_rate for name in TRAIN_METHODS}


def default_learning_rate(method: str, prefix_projection: bool = False) -> float:
    """The learning rate a method trains with unless one is given (`ptuning.methods`).

    Any reparameterized prefix trains at the rate of the method that always reparameterizes
    (prefix tuning): the MLP's prefix moves far more per step than a plain table."""
    if prefix_projection and get_method(method).has_prompt:
        return next(get_method(m).learning_rate for m in METHODS if get_method(m).always_projection)
    return get_method(method).learning_rate


Method = Literal[METHODS]  # type: ignore[valid-type]  # the registry's names
Pooling = Literal["mean", "cls"]
PrefixInit = Literal["random", "vocab"]
PairEncoding = Literal["joint", "separate"]
SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids")  # one model row's inputs
# a text pair encoded separately: the second text's model inputs are the first's keys with this prefix
PAIR_PREFIX = "pair_"


# the task types whose text pairs can be encoded separately (one pair head each, `ptuning.heads`)
SEPARATE_PAIR_TASK_TYPES = ("classification", "regression")


def check_pair_encoding(task_type: str, pair_encoding: str) -> None:
    """ValueError where `pair_encoding` cannot apply to a task of `task_type` (the model, the
    features and a checkpoint's config are checked by this one test)."""
    if pair_encoding == "separate" and task_type not in SEPARATE_PAIR_TASK_TYPES:
        raise ValueError(
            f"pair_encoding 'separate' applies to text-pair {' and '.join(SEPARATE_PAIR_TASK_TYPES)} "
            f"tasks, not {task_type}"
        )


def pair_rows(feature: dict[str, Any]) -> list[dict[str, Any]]:
    """The two model rows of a text pair encoded separately: the first text's inputs, then the
    second text's (its keys without `PAIR_PREFIX`)."""
    return [
        {key: feature[key] for key in SEQUENCE_KEYS if key in feature},
        {key: feature[PAIR_PREFIX + key] for key in SEQUENCE_KEYS if PAIR_PREFIX + key in feature},
    ]


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
    prefix_len: int | None = option(
        None,
        "prompt length P (virtual tokens)",
        group="prompt",
        default_text="the kind of task's: 32, text pairs and token tagging 64; a model built by hand 16",
    )
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
    prompt_dropout_per_example: bool | None = option(
        None,
        "draw the prompt dropout mask per example, as the reference implementation does; "
        "--no-prompt-dropout-per-example draws one mask for the whole batch",
        default_text="on for a deep prefix table (p-tuning-v2), off through the MLP and for input prompts",
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
    pair_encoding: PairEncoding = option(
        "joint",
        "how a text-pair classification or regression task reads its two texts: joint, one sequence "
        "[CLS] a [SEP] b [SEP] (cross-encoding); separate, each text through the same frozen backbone "
        "and prompt on its own, pooled to u and v, the head reading [u, v, |u-v|, u*v] (Sentence-BERT; "
        "the built-in backbones are such bi-encoders)",
        group="prompt",
    )
    head_dropout: float = option(0.1, "dropout before the linear head", group="prompt")
    backbone_dropout: bool = option(
        True,
        "keep the backbone's own dropout while training; --no-backbone-dropout sets every dropout "
        "module of the backbone to p=0, so a frozen backbone gives the prompt and head the same "
        "states on every pass (the prompt's and the head's dropout stay)",
        group="prompt",
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        method = get_method(self.method)
        if method.always_projection and self.prefix_init == "vocab":
            raise ValueError(
                f"prefix_init 'vocab' sets a plain prefix table: {self.method} always has the MLP"
            )
        if method.always_projection:
            self.prefix_projection = True
        if method.has_prompt and self.prefix_len is not None:  # a method without a prompt does not use it
            check_setting("prefix_len", self.prefix_len)
        if self.prompt_layers is not None:
            check_setting("prompt_layers", self.prompt_layers)
        for name, allowed in (
            ("method", Method),
            ("pooling", Pooling),
            ("prefix_init", PrefixInit),
            ("pair_encoding", PairEncoding),
        ):
            if getattr(self, name) not in get_args(allowed):
                raise ValueError(
                    f"{name} must be one of {', '.join(get_args(allowed))}, got {getattr(self, name)!r}"
                )
        if self.prefix_init == "vocab" and self.prefix_projection:
            raise ValueError("prefix_init 'vocab' sets a plain prefix table: not with prefix_projection")

    def filled(self, prefix_len: int = STANDALONE_PREFIX_LEN) -> PromptConfig:
        """This config with what it leaves unset set: the prompt length (`prefix_len` where unset; a
        training run sets the kind of task's, `ptuning.training.defaults`) and per-example dropout."""
        per_example = self.prompt_dropout_per_example
        if per_example is None:
            # per example it helped a plain deep prefix (SST-2 +0.4, RTE and CoNLL-2003 +0.5); through
            # the MLP it kept prefix tuning from learning a synthetic QA task that one mask learns
            per_example = self.deep and not self.prefix_projection
        return replace(
            self,
            prefix_len=prefix_len if self.prefix_len is None else self.prefix_len,
            prompt_dropout_per_example=per_example,
        )

    @property
    def deep(self) -> bool:
        """True for methods that put a prefix in the attention of every (prompted) layer."""
        return get_method(self.method).deep

    @property
    def input_prompt(self) -> bool:
        """True for methods that put P trained vectors before the input embeddings."""
        return get_method(self.method).input_prompt

    @property
    def freezes_backbone(self) -> bool:
        return get_method(self.method).freezes_backbone

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
