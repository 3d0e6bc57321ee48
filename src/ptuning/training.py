"""Training and evaluation with `transformers.Trainer` (no training loop of our own).

`Trainer` brings the optimizer, schedule, gradient accumulation, DDP through Accelerate, bf16,
TensorBoard logging, length-grouped batches, per-epoch evaluation, best-checkpoint selection and
resumption with RNG state. We add what is ours: prompt-only checkpoints (through `PromptTrainer`),
task metrics, and resumption that skips a checkpoint a crash left half-written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler, find_batch_size
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .checkpoint import CONFIG_NAME, atomic_write_text, load_training_state, save_checkpoint
from .config import HANDCRAFTED
from .data import (
    encode,
    load_task,
    load_user_task,
    make_collator,
    subsample,
)
from .data.spec import DataError, TaskSpec
from .heads import head_class
from .modeling import PromptModel
from .precision import resolve_precision
from .train_config import TrainConfig as TrainConfig  # re-exported: its home before train_config

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
COMPLETE_MARKER = "trainer_state.json"  # Trainer writes it last in a checkpoint folder
EVAL_SUBSET_SEED = 0  # the same evaluation subset whatever the training seed, so runs compare


# --- data -------------------------------------------------------------------------------------


def load_data(cfg: TrainConfig):
    if cfg.train_file or cfg.validation_file:
        if not (cfg.train_file and cfg.validation_file):
            raise DataError("--train-file and --validation-file go together: give both")
        return load_user_task(
            cfg.task_type,
            cfg.train_file,
            cfg.validation_file,
            text_column=cfg.text_column,
            text_pair_column=cfg.text_pair_column,
            label_column=cfg.label_column,
            tag_column=cfg.tag_column,
            name=cfg.task,
        )
    return load_task(cfg.task, cfg.data_dir)


def _trained_on(cfg: dict[str, Any]) -> tuple[str, str | None]:
    """(task name as the registry reads it, absolute training file or None) of a run's settings."""
    train_file = cfg.get("train_file")
    return str(cfg.get("task")).strip().lower(), str(Path(train_file).resolve()) if train_file else None


def check_output_dir(cfg: TrainConfig) -> bool:
    """Refuse to replace a checkpoint of another task or other training data in `cfg.output_dir`
    (one line naming both), unless `cfg.overwrite` or `cfg.resume`. True when `cfg.overwrite`
    replaces such a checkpoint."""
    output = Path(cfg.output_dir)
    if cfg.resume or not (output / CONFIG_NAME).is_file():
        return False
    saved = output / "train_config.json"
    try:
        before = json.loads(saved.read_text()) if saved.is_file() else None
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict):
        old_task, old_file = _trained_on(before)
    else:  # a checkpoint saved without train_config.json: its task name only
        try:
            old_task = str(json.loads((output / CONFIG_NAME).read_text())["task"]["name"]).lower()
            old_file = None
        except (OSError, ValueError, KeyError, TypeError):
            old_task, old_file = "unknown", None
    new_task, new_file = _trained_on(cfg.to_dict())
    if (old_task, old_file) == (new_task, new_file):
        return False
    if cfg.overwrite:
        return True
    describe = lambda task, file: f"task {task!r}" + (f" on {file}" if file else "")  # noqa: E731
    raise DataError(
        f"{output} already holds a checkpoint of {describe(old_task, old_file)}; this run is "
        f"{describe(new_task, new_file)}: give another --output-dir, or --overwrite to replace it"
    )


class EvalSet:
    """Examples and their features for one evaluation split, and the metric computation over them."""

    def __init__(self, spec: TaskSpec, examples: list[dict], tokenizer, max_length: int) -> None:
        self.spec = spec
        self.head = head_class(spec.task_type)  # its reduction of logits, label names and metrics
        self.examples = examples
        self.features = encode(spec, examples, tokenizer, max_length, for_training=False)

    def metrics(self, predictions, label_ids) -> dict[str, float]:
        count = len(predictions[0] if isinstance(predictions, tuple) else predictions)
        if count != len(self.features):  # under DDP: a duplicate or a drop in the gathered predictions
            raise RuntimeError(f"evaluation returned {count} predictions for {len(self.features)} features")
        return self.head.evaluate(self.spec, self.examples, self.features, predictions, label_ids)


# --- the trainer ------------------------------------------------------------------------------


class GlobalLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order over the *global* batch, drawn afresh from (seed, epoch) each epoch.

    Every rank draws the same order, and Accelerate hands rank r every world_size-th per-device
    batch of it, so one optimizer step covers the same examples as one step of a single process
    with the same global batch; a resumed run replays the order of the epoch it stopped in.
    """

    def __init__(self, global_batch: int, dataset, seed: int) -> None:
        super().__init__(global_batch, dataset=dataset, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class PromptTrainer(Trainer):
    """Trainer whose checkpoints hold only what trains (prompt + head; everything for fine-tune)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # PromptModel.forward takes **kwargs, so Trainer would take it to normalise its loss by
        # `num_items_in_batch`: it would then skip the division by --grad-accum and, under DDP,
        # multiply the loss by the world size. Our heads return per-batch means.
        self.model_accepts_loss_kwargs = False
        # We pass broadcast_buffers=False (see training_arguments); torch 2.13 warns it is renamed.
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not hasattr(dataset, "__len__"):
            return super()._get_train_sampler(train_dataset)
        args = self.args
        global_batch = args.train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        seed = args.data_seed if args.data_seed is not None else args.seed
        return GlobalLengthGroupedSampler(global_batch, dataset, seed)

    def _get_eval_sampler(self, eval_dataset):
        # Dataset order (Trainer would length-group it): QA, NER and grouped metrics line predictions
        # up with EvalSet's features by position. Under DDP Accelerate shards the batches and
        # `gather_for_metrics` drops the padding of the last one, so each example counts once.
        return torch.utils.data.SequentialSampler(eval_dataset) if hasattr(eval_dataset, "__len__") else None

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        real = self._real_examples(inputs)
        if loss is not None and real:  # the batch's mean loss over its real examples only
            part = {key: value[:real] if torch.is_tensor(value) else value for key, value in inputs.items()}
            loss = super().prediction_step(model, part, True, ignore_keys)[0]
        return loss, logits, labels

    def _real_examples(self, inputs) -> int | None:
        """Under DDP Accelerate fills the last evaluation batch up to full size with examples from the
        start; `gather_for_metrics` cuts them from the predictions, but they would enter that batch's
        mean loss. The number of real examples in this rank's batch when it holds such fill, else None."""
        state = self.accelerator.gradient_state
        if self.accelerator.num_processes == 1 or not state.end_of_dataloader or state.remainder <= 0:
            return None
        size = find_batch_size(inputs)
        real = min(max(state.remainder - self.accelerator.process_index * size, 0), size)
        return real if real < size else None

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            save_checkpoint(self.accelerator.unwrap_model(self.model), output_dir, fold=False)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        load_training_state(model or self.model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        load_training_state(self.model, self.state.best_model_checkpoint)


class _WallClock(TrainerCallback):
    """Training seconds, carried across a crash: each checkpoint records the total so far."""

    FILE = "train_seconds.json"

    def __init__(self, resume_from: Path | None) -> None:
        self.before = _read_seconds(resume_from / self.FILE) if resume_from else 0.0
        self._start = 0.0

    @property
    def seconds(self) -> float:
        return self.before + time.perf_counter() - self._start

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if folder.is_dir():
                atomic_write_text(folder / self.FILE, json.dumps({"seconds": self.seconds}))


def _read_seconds(path: Path) -> float:
    try:
        return float(json.loads(path.read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return 0.0


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders that were fully written, oldest first."""
    found = []
    for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        state = path / COMPLETE_MARKER
        try:
            json.loads(state.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found.append(path)
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def last_complete_checkpoint(folder: Path, *, remove_incomplete: bool = True) -> Path | None:
    """The newest complete checkpoint; half-written ones (a crash mid-save) are removed if asked
    (under DDP by rank 0 only; the others just pass them over)."""
    complete = complete_checkpoints(folder)
    for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if remove_incomplete and path not in complete:
            log.warning("removing incomplete checkpoint %s (the run stopped while writing it)", path)
            shutil.rmtree(path, ignore_errors=True)
    return complete[-1] if complete else None


def training_arguments(
    cfg: TrainConfig, spec: TaskSpec, checkpoint_dir: Path, steps_per_epoch: int
) -> TrainingArguments:
    strategy = "steps" if cfg.save_steps else "epoch"
    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.bf16, "cuda" if cuda else "cpu")
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=math.ceil(cfg.warmup_ratio * _total_steps(cfg, steps_per_epoch)),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=cfg.save_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_{spec.metric}",
        greater_is_better=True,
        logging_steps=cfg.logging_steps,
        report_to=[],  # TensorBoard is added by `_tensorboard` with our log folder
        train_sampling_strategy="group_by_length",
        label_names=list(head_class(spec.task_type).label_names),
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=precision.bf16,  # autocast through Accelerate, on the CPU too
        use_cpu=not cuda,
        dataloader_num_workers=0,
        disable_tqdm=not cfg.progress,
        remove_unused_columns=False,
        # every trainable tensor of a prompt method gets a gradient; fine-tune trains the whole backbone,
        # whose pooler (BERT, RoBERTa, MPNet) never does, so DDP must look for unused parameters there
        ddp_find_unused_parameters=not cfg.prompt_config().freezes_backbone,
        ddp_broadcast_buffers=False,  # the buffers (position ids) never change: no per-step broadcast
    )


def _tensorboard(folder: Path) -> list[TrainerCallback]:
    """TensorBoard logs into `folder`, where tensorboard is installed (a dependency here; an
    image that lacks it, such as a GPU machine's own Python, trains without the logs)."""
    from transformers.integrations import TensorBoardCallback

    try:
        callback = TensorBoardCallback()
    except RuntimeError as exc:
        log.warning("no TensorBoard logs: %s", exc)
        return []
    callback.logging_dir = str(folder)
    return [callback]


def _total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return math.ceil(cfg.epochs * steps_per_epoch)


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _rank() -> int:
    """This process's global rank under torchrun / accelerate launch (0 when run alone)."""
    return int(os.environ.get("RANK", "0"))


def train(cfg: TrainConfig, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Train, evaluate on the validation split, save the best prompt-only checkpoint and metrics.json.

    Several comma-separated tasks (or training files) train one shared prompt (`ptuning.multitask`).
    `callbacks` join the Trainer's in a single-task run (`ptuning tune` prunes trials through one)."""
    if cfg.method == HANDCRAFTED:
        from .handcrafted.run import train_handcrafted

        return train_handcrafted(cfg)
    if "," in cfg.task or "," in (cfg.train_file or ""):
        from .multitask import train_multitask

        return train_multitask(cfg)
    set_seed(cfg.seed)
    output = Path(cfg.output_dir)
    if check_output_dir(cfg) and _rank() == 0:
        # the other run's training checkpoints must not be taken for this run's by a later --resume
        shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
    checkpoint_dir = output / CHECKPOINTS
    resume_from = (
        last_complete_checkpoint(checkpoint_dir, remove_incomplete=_rank() == 0)
        if cfg.resume and checkpoint_dir.is_dir()
        else None
    )

    data = load_data(cfg)
    spec = data.spec
    train_examples = subsample(data.train, cfg.max_train_samples, cfg.seed)
    eval_examples = subsample(data.validation, cfg.max_eval_samples, EVAL_SUBSET_SEED)

    model, tokenizer = PromptModel.from_backbone(cfg.backbone, spec, cfg.prompt_config())
    if cfg.init_from:
        from .transfer import init_prompt_from

        print(f"prompt initialised from {init_prompt_from(model, cfg.init_from)} (head fresh)")
    length = min(cfg.max_seq_length, model.max_text_length)  # prompt tuning's P vectors take positions
    train_features = encode(spec, train_examples, tokenizer, length, for_training=True)
    eval_set = EvalSet(spec, eval_examples, tokenizer, length)
    shallow_cache = None
    if cfg.cache_shallow_layers:
        from .shallow_cache import attach_shallow_cache

        shallow_cache = attach_shallow_cache(
            model, train_features, make_collator(spec, tokenizer), batch_size=cfg.eval_batch_size
        )
        print(shallow_cache.describe())

    global_batch = cfg.batch_size * cfg.grad_accum * _world_size()
    steps_per_epoch = max(1, math.ceil(len(train_features) / global_batch))
    args = training_arguments(cfg, spec, checkpoint_dir, steps_per_epoch)
    clock = _WallClock(resume_from)
    trainer = PromptTrainer(
        model=model,
        args=args,
        train_dataset=train_features,
        eval_dataset=eval_set.features,
        data_collator=make_collator(spec, tokenizer),
        compute_metrics=lambda p: eval_set.metrics(p.predictions, p.label_ids),
        preprocess_logits_for_metrics=eval_set.head.reduce,
        callbacks=[clock, *_tensorboard(output / "tensorboard"), *(callbacks or [])],
    )
    if trainer.is_world_process_zero():
        _write_json(output / "train_config.json", {**cfg.to_dict(), "task": spec.name})
        for note in spec.notes:
            print(f"note: {note}")
        print(resolve_precision(cfg.bf16).describe())
        count = model.count_parameters()
        cut = ""
        if length < cfg.max_seq_length:
            cut = f" (text cut to {length}: the input prompt takes {cfg.prompt.prefix_len} positions)"
        print(
            f"task {spec.name} ({spec.task_type}), backbone {cfg.backbone}, method {cfg.method}: "
            f"{count.describe()}; train {len(train_examples)} examples, eval {len(eval_examples)}; "
            f"max_seq_length {cfg.max_seq_length}{cut}, prefix_len {cfg.prompt.prefix_len}, "
            f"{_planned_length(cfg, steps_per_epoch)}, "
            f"lr {cfg.lr}, batch {cfg.batch_size}x{cfg.grad_accum}x{_world_size()}, pooling {cfg.prompt.pooling}"
            + (f"; resuming from {resume_from}" if resume_from else "")
        )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = clock.seconds

    eval_metrics = trainer.evaluate()  # the best checkpoint is loaded at the end of training
    model = trainer.accelerator.unwrap_model(trainer.model)
    metrics: dict[str, Any] = {}
    if spec.null_answers and "eval_null_threshold" in eval_metrics:  # predict answers as evaluated
        model.spec = replace(model.spec, null_threshold=float(eval_metrics["eval_null_threshold"]))
    if trainer.is_world_process_zero():
        sizes = save_checkpoint(
            model, output, fold=True, inputs=cfg.input_format(), max_seq_length=cfg.max_seq_length
        )
        validation = {k.removeprefix("eval_"): v for k, v in eval_metrics.items()}
        best_step, best_epoch = _best_checkpoint_position(trainer.state)
        if best_epoch is not None:  # the epoch of the kept checkpoint, not the epoch training ended in
            validation["epoch"] = best_epoch
        count = model.count_parameters()
        metrics = {
            "task": spec.name,
            "task_type": spec.task_type,
            "method": cfg.method,
            "backbone": cfg.backbone,
            "trainable_params": count.trainable,
            "total_params": count.total,
            "trainable_share": count.share,
            "train_seconds": round(train_seconds, 2),
            "precision": resolve_precision(cfg.bf16).name,
            "train_examples": len(train_examples),
            "eval_examples": len(eval_examples),
            "global_steps": trainer.state.global_step,
            "epochs_done": round(float(trainer.state.epoch or 0.0), 4),
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_step": best_step,
            "best_epoch": best_epoch,
            **sizes,
            "metric": spec.metric,
            "validation": validation,
            "notes": list(spec.notes),
            **({"shallow_cache": shallow_cache.summary()} if shallow_cache is not None else {}),
        }
        _write_json(output / "metrics.json", metrics)
    return metrics


def _planned_length(cfg: TrainConfig, steps_per_epoch: int) -> str:
    """How long the run trains, as it will run: --max-steps wins over --epochs."""
    if cfg.max_steps > 0:
        return f"max_steps {cfg.max_steps} ({cfg.max_steps / steps_per_epoch:.3g} epochs of {steps_per_epoch} steps)"
    return f"epochs {cfg.epochs:g} ({_total_steps(cfg, steps_per_epoch)} steps)"


def _best_checkpoint_position(state) -> tuple[int | None, float | None]:
    """(step, epoch) of the checkpoint Trainer kept as the best, from its log history."""
    best = state.best_model_checkpoint
    if not best:
        return None, None
    try:
        step = int(Path(best).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None, None
    for entry in state.log_history:
        if entry.get("step") == step and "epoch" in entry:
            return step, round(float(entry["epoch"]), 4)
    return step, None


def _write_json(path: Path, data: Any, trainer: Trainer | None = None) -> None:
    if trainer is not None and not trainer.is_world_process_zero():
        return
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
