"""Everything one training run needs: `TrainConfig`, which holds the run's `PromptConfig`.

This is the one source of the training defaults. Every field carries its help text in its metadata
(`ptuning.core.config.option`), and `ptuning train` generates its options from these fields
(`ptuning.commands.fields`), so `train(TrainConfig())` and `ptuning train` run the same job: the
main job, P-Tuning v2 on 6,000 SST-2 sentences with MiniLM.

The JSON form (`to_dict`, train_config.json, `ptuning train --config`) is flat, keyed by option
name (`"lr"`, `"prefix_len"`), and `TrainConfig.build(**settings)` reads it back. Data passed from
Python (`train_file=` a DataFrame, ...) is recorded there as ``"<in-memory: DataFrame of 5000 rows; sha1
...>"``, which names the data but cannot stand for it: a run from such settings is refused.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from ..core.config import (
    DEFAULT_BACKBONE,
    DEFAULT_METHOD,
    TRAIN_METHODS,
    PromptConfig,
    default_learning_rate,
    option,
)
from ..core.limits import check_setting
from ..methods import find_method, get_method
from ..tasks import DEFAULT_VALIDATION_SPLIT, FILE_TASK_TYPES

TrainMethod = Literal[TRAIN_METHODS]  # type: ignore[valid-type]  # every registered method
TaskType = Literal[FILE_TASK_TYPES]  # type: ignore[valid-type]  # those of your own data files
TaskSampling = Literal["proportional", "temperature"]
ReportTo = Literal["none", "tensorboard", "wandb", "mlflow"]

MAIN_JOB_TASK = "sst2"
# The main job's budget: 12,000 sentences twice was the best of the probes within 5 minutes of 2
# fp32 cores (docs/results/quality.md); every other run trains with --epochs auto unless given a count.
MAIN_JOB_TRAIN_SAMPLES = 12000
MAIN_JOB_EPOCHS = 2
MAIN_JOB_MAX_SEQ_LENGTH = 64  # SST-2's sentences are short
# --epochs auto's cap for a config not yet filled in for its task (`ptuning.training.defaults`)
FALLBACK_MAX_EPOCHS = 20
AUTO = "auto"
# What train_file / validation_file take from Python besides a path: a list of dicts, a pandas
# DataFrame, a datasets Dataset or DatasetDict (`ptuning.data.tables.read_table_source`).
TableData = Any


@dataclass
class TrainConfig:
    """One training run: what to train, how, on which data, where to write it.

    >>> from ptuning import TrainConfig
    >>> TrainConfig.build(task="rte", lr=5e-3, prefix_len=16).prompt.prefix_len
    16
    """

    # what to train
    task: str | None = option(
        None,
        "built-in task name, or the name of a task on your own files; several comma-separated "
        "(conll03,conll04) train one shared prompt with one head per task",
        group="what to train",
        default_text=f"{MAIN_JOB_TASK}; with --train-file, the file's stem less a _train suffix",
    )
    backbone: str = option(
        DEFAULT_BACKBONE, "minilm, mpnet-base, a model folder or a hub id", group="what to train"
    )
    method: TrainMethod = option(
        DEFAULT_METHOD,
        "p-tuning-v2, prefix-tuning, prompt-tuning or fine-tune; handcrafted: a template + verbalizer, "
        "zero-shot unless --max-train-samples N > 0 fits a per-label bias",
        group="what to train",
    )
    prompt: PromptConfig = field(default_factory=PromptConfig, metadata={"nested": True})
    init_from: str | None = option(
        None,
        "start from the prompt of a trained checkpoint or multi-task output folder (head fresh)",
        group="what to train",
        metavar="DIR",
    )
    task_sampling: TaskSampling = option(
        "proportional",
        "several tasks: how many single-task batches each task gets per epoch, proportional to its "
        "examples, or to examples ** (1/T)",
        group="what to train",
    )
    sampling_temperature: float = option(2.0, "T of --task-sampling temperature", group="what to train")
    template: str | None = option(
        None,
        'handcrafted: the template, with {text}, {text_pair} and one {mask} slot, e.g. "{text} It was '
        '{mask}."',
        group="what to train",
        default_text="the built-in task's",
    )
    verbalizer: str | None = option(
        None,
        "handcrafted: label=word pairs, several words joined by |, e.g. negative=terrible,positive=great",
        group="what to train",
        default_text="the built-in task's",
    )
    cache_shallow_layers: bool = option(
        False,
        "with --prompt-layers k: compute the frozen layers below the top k once and reuse their output "
        "every epoch (BERT-family backbones; lower layers without dropout)",
        group="prompt",
    )

    # optimisation
    learning_rate: float | None = option(
        None,
        "learning rate",
        group="optimisation",
        flag="--lr",
        dest="lr",
        default_text="the kind of task's: p-tuning-v2 3e-2 (text pairs 2e-2, QA 1e-2), fine-tune 1e-4 "
        "(text pairs and QA 5e-5), prompt-tuning 3e-2, prefix-tuning and any --prefix-projection 1e-3",
    )
    weight_decay: float = option(0.01, "AdamW weight decay", group="optimisation")
    warmup_ratio: float = option(
        0.06, "share of the steps spent warming the learning rate up", group="optimisation"
    )
    epochs: float | Literal["auto"] | None = option(
        None,
        "passes over the training set, or auto: evaluate every epoch and stop once the validation "
        "metric has not improved for --patience evaluations (at most --max-epochs), e.g. --epochs 3, "
        "--epochs auto",
        group="optimisation",
        metavar="N",
        default_text=f"auto; the main job {MAIN_JOB_EPOCHS}",
    )
    patience: int = option(
        4,
        "with --epochs auto: stop after this many evaluations in a row without a gain of more than "
        "--min-delta in the validation metric, e.g. --patience 5",
        group="optimisation",
        metavar="N",
    )
    min_delta: float = option(
        0.0,
        "with --epochs auto: the smallest rise of the validation metric that counts as a gain, "
        "e.g. --min-delta 0.001 (0.1 accuracy points)",
        group="optimisation",
    )
    min_epochs: int = option(
        0,
        "with --epochs auto: evaluations before this epoch do not count toward --patience, so no run "
        "stops before it (a method that starts slowly, judged on a small validation set), e.g. "
        "--min-epochs 10",
        group="optimisation",
        metavar="N",
    )
    max_epochs: int | None = option(
        None,
        "with --epochs auto: the most epochs it trains; the learning-rate schedule (warmup, linear "
        "decay) is planned over them, e.g. --max-epochs 20",
        group="optimisation",
        metavar="N",
        default_text="the kind of task's: 20, text pairs 30, QA 10",
    )
    batch_size: int = option(32, "per device", group="optimisation")
    eval_batch_size: int = option(64, "evaluation batch, per device", group="optimisation")
    grad_accum: int = option(1, "gradient accumulation steps", group="optimisation")
    max_seq_length: int | None = option(
        None,
        "tokens per input; longer inputs are truncated (raise it for long texts)",
        group="optimisation",
        default_text="the kind of task's: 128, QA 384 (the main job 64)",
    )
    max_steps: int = option(
        -1,
        "stop after N optimizer steps (overrides --epochs)",
        group="optimisation",
        default_text="the epochs decide",
    )
    max_train_samples: int | None | Literal["auto"] = option(
        AUTO,
        "train subset size (none: all)",
        group="optimisation",
        metavar="N",
        default_text=f"{MAIN_JOB_TRAIN_SAMPLES} for the main job, built-in {MAIN_JOB_TASK} without files; all otherwise",
    )
    max_eval_samples: int | None = option(
        None, "validation subset size", group="optimisation", default_text="all"
    )
    save_steps: int | None = option(
        None, "evaluate and save every N steps", group="optimisation", default_text="every epoch"
    )
    seed: int = option(42, "random seed of the run", group="optimisation")
    bf16: bool | None = option(
        None,
        "bf16 mixed precision (autocast) on a GPU, or on a CPU with native bf16 (avx512_bf16 / amx_bf16); "
        "--no-bf16: fp32",
        group="optimisation",
        default_text="bf16 where the device has it natively, else fp32",
    )
    activation_checkpointing: bool = option(
        False,
        "keep only each layer's input for the backward pass and recompute the layer there: less "
        "memory (a frozen backbone's activations are most of a prompt's training memory), one more "
        "forward per step; the results are the same",
        group="optimisation",
    )
    logging_steps: int = option(20, "log the training loss every N steps", group="optimisation")

    # data
    data_dir: str | None = option(
        None, "benchmark folder", group="data", default_text="$PTUNING_DATA, else the hub"
    )
    train_file: str | TableData | None = option(
        None,
        "your own training data: a CSV, TSV, JSONL, JSON, Parquet or Arrow file, a save_to_disk folder "
        "(a DatasetDict's validation part is used unless --validation-file is given), CoNLL columns, "
        "SQuAD JSON; from Python also a list of dicts, a DataFrame, a Dataset or DatasetDict",
        group="data",
    )
    validation_file: str | TableData | None = option(
        None, "your own validation data (the forms of --train-file)", group="data"
    )
    validation_split: float | None = option(
        None,
        "hold out this share (0 < F < 1) of the training data, stratified by label, to select the best "
        "checkpoint on (the same examples whatever --seed); the task's own validation data, where "
        "there is any, is then scored once after training",
        group="data",
        metavar="F",
        default_text=f"none: select on the validation data; {DEFAULT_VALIDATION_SPLIT:g} where your own "
        "training data comes without any",
    )
    task_type: TaskType = option("classification", "type of your own data", group="data")
    text_column: str = option("text", "column of the text in your own files", group="data")
    text_pair_column: str | None = option(None, "second text of a pair task", group="data")
    label_column: str = option("label", "column of the label in your own files", group="data")
    tag_column: int = option(-1, "CoNLL tag column index", group="data", default_text="last")

    # output
    output_dir: str | None = option(
        None,
        "where the run writes",
        group="output",
        default_text="outputs/<task>-<method>",
    )
    overwrite: bool = option(
        False,
        "replace a checkpoint of another task or other training data in --output-dir, or write into a "
        "non-empty folder that holds no run of ptuning",
        group="output",
    )
    resume: bool = option(
        False,
        "continue from the last complete checkpoint in --output-dir; settings other than the run's "
        "own are refused, naming them",
        group="output",
    )
    resume_with_changes: bool = option(
        False,
        "with --resume: continue even though settings differ from the run's (the optimizer state and "
        "schedule are the old run's; train_config.json records the new settings)",
        group="output",
    )
    report_to: ReportTo = option(
        "tensorboard",
        "where the training curves go: tensorboard (logs in <output-dir>/tensorboard), wandb or "
        "mlflow (each needs its package and its own login / tracking settings), or none; e.g. "
        "--report-to wandb",
        group="output",
    )
    progress: bool = option(True, "a progress bar", cli=False)  # the command's --quiet
    extra: dict[str, Any] = option({}, "free-form notes kept in train_config.json", cli=False)

    def __post_init__(self) -> None:
        if self.method not in get_args(TrainMethod):
            raise ValueError(f"method must be one of {', '.join(get_args(TrainMethod))}, got {self.method!r}")
        if self.learning_rate is not None:  # the bound the search spaces use (ptuning.core.limits)
            check_setting("lr", self.learning_rate)
        if get_method(self.method).prompt_model and self.prompt.method != self.method:
            self.prompt = replace(self.prompt, method=self.method)
        if self.report_to not in get_args(ReportTo):
            raise ValueError(
                f"report_to must be one of {', '.join(get_args(ReportTo))}, got {self.report_to!r}"
            )
        if self.validation_split is not None and not 0 < self.validation_split < 1:
            raise ValueError(
                f"--validation-split must be a share between 0 and 1 (exclusive), got {self.validation_split}"
            )
        own_data = self.train_file is not None and not (
            isinstance(self.train_file, str) and not self.train_file
        )
        if self.task is None:  # several comma-separated files: several tasks (ptuning.training.multitask)
            if own_data and not isinstance(self.train_file, str | os.PathLike):
                self.task = "custom"  # data passed from Python has no file name
            else:
                files = str(self.train_file).split(",") if own_data else []
                self.task = ",".join(task_name_of_file(f) for f in files) if files else MAIN_JOB_TASK
        main_job = self.max_train_samples == AUTO and self.task == MAIN_JOB_TASK and not own_data
        if self.max_train_samples == AUTO:
            self.max_train_samples = MAIN_JOB_TRAIN_SAMPLES if main_job else None
            if get_method(self.method).zero_shot:
                self.max_train_samples = 0  # zero-shot unless a few-shot size is given
        if self.epochs is None:  # a method without gradients makes one pass (nothing to stop early)
            self.epochs = MAIN_JOB_EPOCHS if main_job or not get_method(self.method).gradient else AUTO
        if main_job and self.max_seq_length is None:
            self.max_seq_length = MAIN_JOB_MAX_SEQ_LENGTH
        if main_job and self.prompt.prompt_dropout_per_example is None:
            # +0.4 points there, but drawing a mask per example costs about a fifth more time
            self.prompt = replace(self.prompt, prompt_dropout_per_example=False)
        self._check_epochs()
        if not self.output_dir:  # named after what is trained: the task (from the training file's name)
            self.output_dir = f"outputs/{self.task.replace(',', '+')}-{self.method}"

    def _check_epochs(self) -> None:
        """--epochs is a number > 0 or "auto"; the early-stopping settings are in range (one line each)."""
        epochs = self.epochs
        if isinstance(epochs, str) and epochs.strip().lower() == AUTO:
            self.epochs = AUTO
        elif isinstance(epochs, bool) or not isinstance(epochs, (int, float)):
            raise TypeError(f"epochs must be a number or {AUTO!r}, got {type(epochs).__name__} {epochs!r}")
        elif not (epochs > 0 and math.isfinite(epochs)):  # also refuses NaN
            raise ValueError(f"epochs must be > 0 (or {AUTO!r}), got {epochs:g}")
        for name, value, kind in (
            ("patience", self.patience, int),
            ("max_epochs", FALLBACK_MAX_EPOCHS if self.max_epochs is None else self.max_epochs, int),
            ("min_delta", self.min_delta, (int, float)),
            ("min_epochs", self.min_epochs, int),
        ):
            if isinstance(value, bool) or not isinstance(value, kind):
                wanted = "an integer" if kind is int else "a number"
                raise TypeError(f"{name} must be {wanted}, got {type(value).__name__} {value!r}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1 evaluation, got {self.patience}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.min_epochs < 0:
            raise ValueError(f"min_epochs must be >= 0, got {self.min_epochs}")
        if self.max_epochs is not None and self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) must not exceed max_epochs ({self.max_epochs})")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta:g}")

    @property
    def auto_epochs(self) -> bool:
        """True when training stops on its own (--epochs auto), capped by max_epochs."""
        return self.epochs == AUTO

    @property
    def planned_epochs(self) -> float:
        """The epochs the schedule is planned over: --epochs, or the --max-epochs cap of --epochs auto."""
        if self.epochs != AUTO:
            return float(self.epochs)
        return float(FALLBACK_MAX_EPOCHS if self.max_epochs is None else self.max_epochs)

    # --- construction from flat settings ---------------------------------------------------------

    @classmethod
    def build(cls, **settings: Any) -> TrainConfig:
        """A config from flat settings: fields of TrainConfig or of its PromptConfig, by field or
        option name (`lr`), and the two options of `ptuning train` that are not fields: `quiet`
        (no progress bar) and `config` (a JSON settings file, under the settings given here).
        Unknown names are an error (a typo would otherwise pass unnoticed)."""
        if "config" in settings:
            path = settings.pop("config")
            if path is not None:
                settings = {**_settings_file(path), **settings}
        if "quiet" in settings:
            settings["progress"] = not settings.pop("quiet")
        own = {f.name for f in fields(cls)} - {"prompt"}
        prompt_fields = {f.name for f in fields(PromptConfig)}
        top: dict[str, Any] = {}
        prompt: dict[str, Any] = {}
        for name, value in settings.items():
            name = OPTION_FIELDS.get(name, name)
            if name in own:
                top[name] = value
            elif name in prompt_fields:
                prompt[name] = value
            else:
                raise TypeError(f"TrainConfig has no setting {name!r}")
        method = find_method(top.get("method"))
        if method is not None and method.prompt_model:
            prompt["method"] = method.name
        return cls(**top, prompt=PromptConfig(**prompt))

    def updated(self, **settings: Any) -> TrainConfig:
        """A copy with some flat settings changed (data passed from Python kept as it is)."""
        data = {"train_file": self.train_file, "validation_file": self.validation_file}
        return TrainConfig.build(**{**self.to_dict(), **data, **settings})

    def to_dict(self) -> dict[str, Any]:
        """Flat settings keyed by field name (the prompt's fields beside the run's), as train_config.json;
        data passed from Python as its description (`ptuning.data.tables.describe_source`)."""
        from ..data.tables import describe_source

        recorded = replace(
            self,
            train_file=describe_source(self.train_file),
            validation_file=describe_source(self.validation_file),
        )
        data = asdict(recorded)
        prompt = data.pop("prompt")
        prompt.pop("method")
        return {**data, **prompt}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From `to_dict`'s output; unknown keys (another version's) are ignored."""
        known = {f.name for f in fields(cls)} | {f.name for f in fields(PromptConfig)} | set(OPTION_FIELDS)
        return cls.build(**{k: v for k, v in data.items() if k in known})

    # --- derived ----------------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return default_learning_rate(self.method, self.prompt.prefix_projection)

    def input_format(self):
        """How this run's data files are laid out (recorded in the checkpoint): a `data.inputs.InputFormat`."""
        from ..data.inputs import InputFormat

        # rows passed from Python are read back (eval, predict) as JSONL rows with the same columns
        files = self.train_file if isinstance(self.train_file, str | os.PathLike) else "rows.jsonl"
        return InputFormat.for_files(
            self.task_type,
            files if self.train_file is not None else None,
            text_column=self.text_column,
            text_pair_column=self.text_pair_column,
            label_column=self.label_column,
            tag_column=self.tag_column,
        )


def _settings_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a JSON settings file (`ptuning train --config`), for `TrainConfig.build`."""
    from ..errors import UserError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the settings file ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of settings, found {type(data).__name__}")
    known = (
        {f.name for f in fields(TrainConfig)} | {f.name for f in fields(PromptConfig)} | set(OPTION_FIELDS)
    )
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{path}: unknown setting {unknown[0]!r}")
    return data


# the suffixes a training file's stem drops to name its task: tickets_train.csv trains "tickets"
TRAIN_FILE_SUFFIXES = ("_train", "-train", ".train")


def task_name_of_file(path: str) -> str:
    """The task name of a training file: its stem, less a _train / -train / .train suffix
    (`tickets_train.csv` -> "tickets"); a stem that is only "train" stays "train"."""
    stem = Path(path).stem
    for suffix in TRAIN_FILE_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


# option name -> field name, where an option's `dest` differs from its field's name (`lr`)
OPTION_FIELDS: dict[str, str] = {
    f.metadata["dest"]: f.name for f in fields(TrainConfig) if "dest" in f.metadata
}
