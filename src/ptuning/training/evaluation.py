"""Evaluation: the metric computation over an evaluation split (`EvalSet`) and the metrics of a
saved checkpoint on a task's split (`evaluate_checkpoint`, behind `ptuning eval`)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from ..checkpoint import TRAIN_CONFIG_NAME
from ..core.precision import resolve_precision
from ..data import encode, load_task, load_user_task, make_collator, subsample
from ..data.inputs import InputFormat
from ..data.load import EVAL_SUBSET_SEED
from ..errors import DataError
from ..heads import head_class
from ..model import PromptModel
from ..tasks import TaskSpec
from .trainer import PromptTrainer


class EvalSet:
    """Examples and their features for one evaluation split, and the metric computation over them."""

    def __init__(
        self,
        spec: TaskSpec,
        examples: list[dict],
        tokenizer,
        max_length: int,
        *,
        pair_encoding: str = "joint",
    ) -> None:
        """`pair_encoding`: the model's (`PromptConfig.pair_encoding`), how its features hold a text pair."""
        self.spec = spec
        self.head = head_class(spec.task_type)  # its reduction of logits, label names and metrics
        self.examples = examples
        self.features = encode(
            spec, examples, tokenizer, max_length, for_training=False, pair_encoding=pair_encoding
        )

    def metrics(self, predictions, label_ids) -> dict[str, float]:
        count = len(predictions[0] if isinstance(predictions, tuple) else predictions)
        if count != len(self.features):  # under DDP: a duplicate or a drop in the gathered predictions
            raise RuntimeError(f"evaluation returned {count} predictions for {len(self.features)} features")
        return self.head.evaluate(self.spec, self.examples, self.features, predictions, label_ids)


def evaluation_trainer(
    model: PromptModel,
    eval_set: EvalSet,
    output_dir: str | Path,
    *,
    batch_size: int,
    bf16: bool | None = False,
    collator=None,
    trainer_class: type[PromptTrainer] = PromptTrainer,
) -> PromptTrainer:
    """A Trainer that only scores `eval_set` with `model` (`evaluate`, `predict`): `ptuning eval`,
    and the benches and tests that time or compare its passes. `collator`: the task's by default."""
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_eval_batch_size=batch_size,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=resolve_precision(bf16).bf16,
        label_names=list(head_class(model.spec.task_type).label_names),
        remove_unused_columns=False,
    )
    return trainer_class(
        model=model,
        args=args,
        data_collator=collator or make_collator(model.spec, model.tokenizer),
        compute_metrics=lambda p: eval_set.metrics(p.predictions, p.label_ids),
        preprocess_logits_for_metrics=eval_set.head.reduce,
    )


def check_labels(checkpoint: TaskSpec, data: TaskSpec, source: str) -> None:
    """Data labelled as `data` can be scored by a checkpoint of `checkpoint`: same task type, and every
    label of the data known to the checkpoint (any order: examples carry label names, which are
    mapped to the checkpoint's ids; labels the data never uses are fine)."""
    if data.task_type != checkpoint.task_type:
        raise DataError(
            f"{source} is {data.task_type} data, but the checkpoint ({checkpoint.name!r}) is {checkpoint.task_type}"
        )
    if data.num_choices != checkpoint.num_choices:  # set for multiple choice only
        raise DataError(
            f"{source} has {data.num_choices} choices per example, the checkpoint {checkpoint.num_choices}"
        )
    extra = [label for label in data.labels if label not in checkpoint.labels]
    if extra:
        missing = [label for label in checkpoint.labels if label not in data.labels]
        raise DataError(
            f"labels of {source} differ from the checkpoint's ({checkpoint.name!r}): not in the checkpoint "
            f"{extra}; in the checkpoint but not in the data {missing}"
        )


def _recorded_user_data(checkpoint, spec: TaskSpec, inputs: InputFormat):
    """The own data a checkpoint (a `Checkpoint`) was trained on (from its train_config.json), read its
    way: the validation file, a DatasetDict's validation part, or the split the run held out."""
    from ..data.tables import is_in_memory_record

    saved = Path(checkpoint) / TRAIN_CONFIG_NAME
    cfg = checkpoint.train_config
    train_file, validation_file = (cfg.get(k) for k in ("train_file", "validation_file"))
    if is_in_memory_record(train_file) or is_in_memory_record(validation_file):
        raise DataError(
            f"checkpoint {checkpoint} was trained on data passed from Python, which {saved} cannot hold: "
            "give --validation-file FILE"
        )
    if not (train_file and isinstance(train_file, str) and isinstance(validation_file, str | None)):
        raise DataError(
            f"checkpoint {checkpoint} was trained on your own files, and {saved} does not say which: "
            "give --validation-file FILE"
        )
    if cfg.get("validation_split") is not None:  # the held-out examples, drawn as in training
        from ..data.load import load_data
        from .config import TrainConfig

        return load_data(TrainConfig.from_dict({**cfg, "resume": False}))
    return _load_user_files(spec, train_file, validation_file, inputs)


def _load_user_files(spec: TaskSpec, train_file: str, validation_file: str | None, inputs: InputFormat):
    """A user task's files read with the input columns a checkpoint recorded."""
    return load_user_task(
        spec.task_type,
        train_file,
        validation_file,
        text_column=inputs.text_column,
        text_pair_column=inputs.text_pair_column,
        label_column=inputs.label_column,
        tag_column=inputs.tag_column,
        name=spec.name,
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    task: str | None = None,
    split: str = "validation",
    data_dir: str | None = None,
    max_eval_samples: int | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 64,
    validation_file: str | None = None,
    columns: dict[str, Any] | None = None,
    bf16: bool | None = None,
) -> dict[str, Any]:
    """Metrics of a saved checkpoint on a task's split (default: the task it was trained on).

    `validation_file` is read with the input columns the checkpoint recorded, `columns` (e.g.
    {"text_column": "review"}) overriding some;
    `max_seq_length` defaults to the recorded one (else 128). Labels are matched by name, so a file
    or task with the same labels in another order scores correctly. `bf16`: True / False / None (what
    the training run chose, else the default of `ptuning.core.precision`).

        >>> import ptuning
        >>> ptuning.evaluate("outputs/sst2-p-tuning-v2", max_eval_samples=200)["accuracy"]
    """
    from ..checkpoint import Checkpoint

    checkpoint = Checkpoint.read(checkpoint)  # its config read and checked once, for every step
    inputs = replace(checkpoint.inputs, **(columns or {}))
    max_seq_length = max_seq_length or checkpoint.max_seq_length or 128
    # the method's own evaluator (`ptuning.methods`): a prompt model's, a template's, ...
    evaluator = checkpoint.method.hook("evaluator")(checkpoint, max_seq_length)
    spec = evaluator.spec
    if bf16 is None:  # evaluate in the precision the run trained (and evaluated) in
        bf16 = checkpoint.train_config.get("bf16")
        bf16 = bf16 if isinstance(bf16, bool) else None
    if validation_file:
        data = _load_user_files(spec, validation_file, validation_file, inputs)
    elif task is None and inputs.file_format != "builtin":
        data = _recorded_user_data(checkpoint, spec, inputs)
    else:
        data = load_task(task or spec.name, data_dir)
    if split not in ("validation", "train"):
        raise DataError(f"unknown split {split!r}; expected 'validation' or 'train'")
    check_labels(spec, data.spec, validation_file or f"task {data.spec.name!r}")
    examples = subsample(getattr(data, split), max_eval_samples, EVAL_SUBSET_SEED)
    metrics = evaluator.score(examples, batch_size, bf16)
    return {
        "task": data.spec.name,
        "split": split,
        **({"file": str(validation_file)} if validation_file else {}),
        "examples": len(examples),
        **metrics,
    }


class PromptModelEvaluator:
    """`evaluate_checkpoint`'s scoring of a prompt-weights checkpoint: `PromptTrainer.evaluate`."""

    def __init__(self, model: PromptModel, max_seq_length: int) -> None:
        self.model = model
        self.spec = model.spec
        self.max_seq_length = max_seq_length

    @classmethod
    def from_checkpoint(cls, checkpoint, max_seq_length: int) -> PromptModelEvaluator:
        return cls(PromptModel.from_pretrained(checkpoint), max_seq_length)

    def score(self, examples: list[dict], batch_size: int, bf16: bool | None) -> dict[str, Any]:
        model, spec = self.model, self.spec
        tokenizer = model.tokenizer
        eval_set = EvalSet(
            spec,
            examples,
            tokenizer,
            min(self.max_seq_length, model.max_text_length),
            pair_encoding=model.prompt_config.pair_encoding,
        )
        # the Trainer wants a folder of its own; a temporary one, so a read-only checkpoint evaluates
        scratch = tempfile.mkdtemp(prefix="ptuning-eval-")
        trainer = evaluation_trainer(model, eval_set, scratch, batch_size=batch_size, bf16=bf16)
        try:
            raw = trainer.evaluate(eval_set.features)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {k.removeprefix("eval_"): v for k, v in raw.items()}
