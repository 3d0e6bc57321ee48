"""The settings a run gets for what it leaves unset, by kind of task.

A prompt's length and learning rate, and how long it trains, depend on the kind of task more than
on the dataset: one sentence to one label, a pair of texts to one label, one tag per word, or an
answer span. `TrainConfig` leaves `prefix_len`, `learning_rate` and `max_epochs` unset (None) unless
given, and `max_seq_length`; a run fills them in here once its data is loaded (`for_task`), and train_config.json records
the filled-in values. `epochs` is `auto` unless given (the main job: `MAIN_JOB_EPOCHS`), so a run
trains until its validation metric stops rising, capped by the kind's `max_epochs`.

Where the numbers come from (docs/results/defaults.md has the measurements): the tuned settings of
reports/cpu-converged (SST-2 and CoNLL-2003 picked lr about 3e-2 with P = 32 and 64; fine-tuning
picked 1.3e-4 on both), the study's first trials, and probes of the main job. They are settings of
the default backbone (MiniLM); a larger one may want a lower fine-tuning rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from ..core.config import default_learning_rate
from ..methods import get_method
from ..tasks import gives_pairs

if TYPE_CHECKING:
    from .config import TrainConfig

TaskKind = Literal["sentence", "pair", "tokens", "span"]
TASK_KINDS: tuple[str, ...] = get_args(TaskKind)


@dataclass(frozen=True)
class KindDefaults:
    """What a run of one kind of task trains with unless told otherwise."""

    description: str
    prefix_len: int  # P of every prompt method
    max_epochs: int  # the cap of --epochs auto
    max_seq_length: int  # tokens per input (batches are padded to their longest, so short texts cost no more)
    # method -> learning rate where the kind's differs from the method's own (`ptuning.methods`)
    learning_rates: Mapping[str, float] = field(default_factory=dict)


DEFAULTS: dict[str, KindDefaults] = {
    "sentence": KindDefaults(
        "single-text classification or regression",
        prefix_len=32,
        max_epochs=20,
        max_seq_length=128,
        learning_rates={"p-tuning-v2": 3e-2, "fine-tune": 1e-4},
    ),
    "pair": KindDefaults(
        "text-pair classification or regression, multiple choice",
        prefix_len=64,
        max_epochs=30,
        max_seq_length=128,
        learning_rates={"p-tuning-v2": 2e-2, "fine-tune": 5e-5},
    ),
    "tokens": KindDefaults(
        "token classification (NER, one tag per word)",
        prefix_len=64,
        max_epochs=20,
        max_seq_length=128,
        learning_rates={"p-tuning-v2": 3e-2, "fine-tune": 1e-4},
    ),
    "span": KindDefaults(
        "extractive question answering",
        prefix_len=32,
        max_epochs=10,
        max_seq_length=384,
        learning_rates={"p-tuning-v2": 1e-2, "fine-tune": 5e-5},
    ),
}


def task_kind(task_type: str, examples: Sequence[Mapping[str, Any]] = ()) -> str:
    """The kind of a task of `task_type` whose training examples are `examples` (a pair where they
    give pairs, `ptuning.tasks.gives_pairs`)."""
    if task_type == "token_classification":
        return "tokens"
    if task_type == "question_answering":
        return "span"
    if task_type == "multiple_choice":
        return "pair"
    return "pair" if gives_pairs(examples) else "sentence"


def learning_rate(kind: str, method: str, prefix_projection: bool = False) -> float:
    """The learning rate `method` trains a task of `kind` with unless one is given. A reparameterized
    prefix keeps the rate of its MLP (`ptuning.core.config.default_learning_rate`)."""
    if prefix_projection:
        return default_learning_rate(method, prefix_projection)
    return DEFAULTS[kind].learning_rates.get(method, default_learning_rate(method))


def for_task(cfg: TrainConfig, kind: str) -> TrainConfig:
    """`cfg` with what it left unset filled in for a task of `kind`: the prompt length, the learning
    rate, the cap of --epochs auto and the tokens per input."""
    defaults = DEFAULTS[kind]
    prompt = cfg.prompt.filled(prefix_len=defaults.prefix_len)
    return replace(
        cfg,
        prompt=prompt,
        learning_rate=(
            cfg.learning_rate
            if cfg.learning_rate is not None or not get_method(cfg.method).gradient
            else learning_rate(kind, cfg.method, prompt.prefix_projection)
        ),
        max_epochs=cfg.max_epochs if cfg.max_epochs is not None else defaults.max_epochs,
        max_seq_length=cfg.max_seq_length if cfg.max_seq_length is not None else defaults.max_seq_length,
    )


def _rate(value: float) -> str:
    """3e-2, not 0.03: learning rates read as their magnitude."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def table(methods: Iterable[str] = ("p-tuning-v2", "fine-tune")) -> str:
    """The defaults as an aligned text table, one row per kind (`ptuning train --help`, the docs)."""
    header = ["kind", "P", *(f"{m} lr" for m in methods), "auto up to", "tokens", "what it is"]
    rows = [header]
    for kind, d in DEFAULTS.items():
        rates = [_rate(learning_rate(kind, m)) for m in methods]
        rows.append(
            [kind, str(d.prefix_len), *rates, f"{d.max_epochs} epochs", str(d.max_seq_length), d.description]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    )
