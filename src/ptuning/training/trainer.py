"""The Trainer machinery of a run: `PromptTrainer` (prompt-only checkpoints; the orders of its
batches are `sampling`'s), callbacks, `TrainingArguments` from a `TrainConfig`, and resume discovery.

`Trainer` brings the optimizer, schedule, gradient accumulation, DDP through Accelerate, bf16,
TensorBoard logging, length-grouped batches, per-epoch evaluation, best-checkpoint selection and
resumption with RNG state. We add what is ours: prompt-only checkpoints (through `PromptTrainer`)
and resumption that skips a checkpoint a crash left half-written. Single-task runs (`training`),
multi-task runs (`multitask`) and evaluation (`evaluation`) build on it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_pt_utils import find_batch_size
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalPrediction

from ..checkpoint import atomic_write_text, load_training_state, save_checkpoint
from ..core.precision import hold_frozen_in_bf16, resolve_precision
from ..heads import head_class
from ..tasks import TaskSpec
from ..wording import plural
from .config import TrainConfig
from .prefix_watch import PrefixWatch
from .sampling import GlobalLengthGroupedSampler, LengthSortedSampler

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
COMPLETE_MARKER = "trainer_state.json"  # Trainer writes it last in a checkpoint folder


# --- the trainer ------------------------------------------------------------------------------


def _in_dataset_order(value, inverse: np.ndarray):
    """Rows of gathered predictions or labels (an array, or a tuple/list of them) taken from the
    sampler's order back to dataset order."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return type(value)(_in_dataset_order(part, inverse) for part in value)
    if len(value) != len(inverse):  # EvalSet.metrics names the mismatch; leave the rows as they came
        return value
    return value[inverse]


class PromptTrainer(Trainer):
    """Trainer whose checkpoints hold only what trains (prompt + head; everything for fine-tune)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Trainer's own progress bars (a nested one per evaluation) and printed log dicts (the final
        # evaluation's too, which the command prints itself) make a noisy log: `progress_callbacks`
        # draws one bar, or writes a line per evaluation.
        for callback in (PrinterCallback, ProgressCallback):
            self.remove_callback(callback)
        # PromptModel.forward takes **kwargs, so Trainer would take it to normalise its loss by
        # `num_items_in_batch`: it would then skip the division by --grad-accum and, under DDP,
        # multiply the loss by the world size. Our heads return per-batch means.
        self.model_accepts_loss_kwargs = False
        if self.args.bf16:  # autocast would cast the frozen weights again at every step
            hold_frozen_in_bf16(self.model)
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
        # Longest first, so that each batch pads only to its own length (RTE's 249-example split:
        # 17.5 s where dataset order took 30.8); `evaluation_loop` puts the predictions back in
        # dataset order, where QA, NER and grouped metrics line them up with EvalSet's features by
        # position. Under DDP Accelerate shards the batches of this one order and
        # `gather_for_metrics` drops the padding of the last one, so each example counts once.
        if not hasattr(eval_dataset, "__len__"):
            return None
        sampler = LengthSortedSampler(eval_dataset)
        self.__dict__.setdefault("_eval_orders", {})[id(eval_dataset)] = (eval_dataset, sampler.order)
        return sampler

    def evaluation_loop(self, dataloader, *args, **kwargs):
        """Trainer's loop over the length-sorted batches, with predictions and labels handed to the
        metrics (and returned) in dataset order."""
        dataset, order = self.__dict__.get("_eval_orders", {}).get(id(dataloader.dataset), (None, None))
        if dataset is not dataloader.dataset or order is None:
            return super().evaluation_loop(dataloader, *args, **kwargs)
        inverse = np.argsort(np.asarray(order))
        metrics = self.compute_metrics
        if metrics is not None:
            self.compute_metrics = lambda p: metrics(
                EvalPrediction(
                    predictions=_in_dataset_order(p.predictions, inverse),
                    label_ids=_in_dataset_order(p.label_ids, inverse),
                    inputs=_in_dataset_order(p.inputs, inverse),
                    losses=_in_dataset_order(p.losses, inverse),
                )
            )
        try:
            output = super().evaluation_loop(dataloader, *args, **kwargs)
        finally:
            self.compute_metrics = metrics
        return output._replace(
            predictions=_in_dataset_order(output.predictions, inverse),
            label_ids=_in_dataset_order(output.label_ids, inverse),
        )

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


class WallClock(TrainerCallback):
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
        warmup_steps=math.ceil(cfg.warmup_ratio * total_steps(cfg, steps_per_epoch)),
        num_train_epochs=cfg.planned_epochs,  # --epochs auto: the cap; EarlyStoppingCallback ends it sooner
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
        # --epochs auto: a resumed run goes on counting the evaluations without a gain
        restore_callback_states_from_checkpoint=cfg.auto_epochs,
        metric_for_best_model=f"eval_{spec.metric}",
        greater_is_better=True,
        logging_steps=cfg.logging_steps,
        # TensorBoard is added by `run_callbacks` with our log folder; wandb and mlflow by Trainer
        report_to=[cfg.report_to] if cfg.report_to in ("wandb", "mlflow") else [],
        train_sampling_strategy="group_by_length",
        label_names=list(head_class(spec.task_type).label_names),
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=precision.bf16,  # autocast through Accelerate, on the CPU too
        use_cpu=not cuda,
        dataloader_num_workers=0,
        disable_tqdm=True,  # PromptTrainer reports progress through `progress_callbacks` instead
        remove_unused_columns=False,
        # every trainable tensor of a prompt method gets a gradient; fine-tune trains the whole backbone,
        # whose pooler (BERT, RoBERTa, MPNet) never does, so DDP must look for unused parameters there
        ddp_find_unused_parameters=not cfg.prompt.freezes_backbone,
        ddp_broadcast_buffers=False,  # the buffers (position ids) never change: no per-step broadcast
    )


def tensorboard_callbacks(folder: Path) -> list[TrainerCallback]:
    """TensorBoard logs into `folder`, where tensorboard is installed (a dependency here; an
    image that lacks it, such as a GPU machine's own Python, trains without the logs)."""
    from transformers.integrations import TensorBoardCallback

    try:
        callback = TensorBoardCallback()
    except RuntimeError:
        log.warning("no TensorBoard logs: the tensorboard package is missing (pip install tensorboard)")
        return []
    callback.logging_dir = str(folder)
    return [callback]


def run_callbacks(cfg: TrainConfig, output: Path, clock: WallClock) -> list[TrainerCallback]:
    """The callbacks of a training run, in order: the wall clock, TensorBoard (--report-to
    tensorboard; wandb and mlflow come through TrainingArguments.report_to), early stopping
    (--epochs auto), the prefix's size watch and the progress report."""
    callbacks: list[TrainerCallback] = [clock]
    if cfg.report_to == "tensorboard":
        callbacks += tensorboard_callbacks(output / "tensorboard")
    if cfg.auto_epochs:
        if cfg.min_epochs:
            callbacks.append(LateEarlyStopping(cfg.patience, cfg.min_delta, min_epochs=cfg.min_epochs))
        else:  # transformers' own, whose saved state a resumed run of an earlier version restores
            callbacks.append(EarlyStoppingCallback(cfg.patience, cfg.min_delta))
    return [*callbacks, PrefixWatch(), *progress_callbacks(cfg)]


class LateEarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping, counting evaluations without a gain only from epoch
    `min_epochs` on (--min-epochs): on a validation set of a few hundred examples one lucky early
    evaluation can outlast the patience of a method whose training loss is still falling."""

    def __init__(
        self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0, min_epochs: int = 0
    ) -> None:
        super().__init__(early_stopping_patience, early_stopping_threshold)
        self.min_epochs = min_epochs

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        if float(state.epoch or 0.0) < self.min_epochs - 1e-6:  # an epoch's evaluation lands at ~N.0
            return
        super().on_evaluate(args, state, control, metrics, **kwargs)

    def state(self) -> dict:
        saved = super().state()  # a resumed run rebuilds the callback from these args
        saved["args"]["min_epochs"] = self.min_epochs
        return saved


def progress_callbacks(cfg: TrainConfig, *, terminal: bool | None = None) -> list[TrainerCallback]:
    """Nothing with --quiet; one progress bar where stdout and stderr are a terminal (`terminal`:
    None asks them); else a plain line per evaluation, which reads well in a log file."""
    if not cfg.progress:
        return []
    if terminal is None:
        terminal = sys.stdout.isatty() and sys.stderr.isatty()
    return [ProgressLines(bar=terminal, patience=cfg.patience if cfg.auto_epochs else None)]


class ProgressLines(TrainerCallback):
    """One line per evaluation during training (the epoch, the validation metric, whether it is the
    best so far), and with `bar` one training progress bar, the lines written above it.

    Evaluations after training (the final `trainer.evaluate()`) print nothing: the command prints
    the final metrics once. `patience`: the early stopping's (--epochs auto), to say when it stopped
    a run before its planned end."""

    def __init__(self, *, bar: bool, patience: int | None = None) -> None:
        self.bar = bar
        self.patience = patience
        self._tqdm = None
        self._training = False
        self._loss: float | None = None
        self._seen = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True
        if self.bar and state.is_world_process_zero:
            from tqdm import tqdm

            self._tqdm = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True)
            self._seen = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self._tqdm is not None:
            self._tqdm.update(state.global_step - self._seen)
            self._seen = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not (self._training and state.is_world_process_zero and metrics):
            return
        self.write(self.describe(args, state, control, metrics))

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        if self.patience is not None and state.global_step < state.max_steps and state.is_world_process_zero:
            metric = args.metric_for_best_model.removeprefix("eval_")
            best = f" (best {state.best_metric:.4f})" if state.best_metric is not None else ""
            self.write(
                f"stopped early at epoch {float(state.epoch or 0.0):.3g}: {metric} did not improve in "
                f"{plural(self.patience, 'evaluation')}{best}"
            )
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def write(self, line: str) -> None:
        if self._tqdm is not None:
            self._tqdm.write(line)
        else:
            print(line, flush=True)

    def describe(self, args, state, control, metrics: dict[str, Any]) -> str:
        """e.g. "epoch 2 of 50: accuracy 0.8125 (best so far), train loss 0.4512, eval loss 0.4410"."""
        epoch = float(state.epoch or 0.0)
        planned = f" of {args.num_train_epochs:g}" if args.max_steps <= 0 else ""
        where = f"epoch {epoch:.3g}{planned}"
        if args.eval_strategy == "steps":
            where = f"step {state.global_step} ({where})"
        key = args.metric_for_best_model
        parts = []
        value = metrics.get(key)
        if value is not None:
            best = state.best_metric  # still the best of the evaluations before this one
            parts.append(
                f"{key.removeprefix('eval_')} {value:.4f}"
                + (" (best so far)" if best is None or value > best else "")
            )
        if self._loss is not None:
            parts.append(f"train loss {self._loss:.4f}")
        if "eval_loss" in metrics:
            parts.append(f"eval loss {metrics['eval_loss']:.4f}")
        return f"{where}: {', '.join(parts)}"


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return math.ceil(cfg.planned_epochs * steps_per_epoch)


def world_size_of_run() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's global rank under torchrun / accelerate launch (0 when run alone)."""
    return int(os.environ.get("RANK", "0"))


def write_json(path: Path, data: Any, trainer: Trainer | None = None) -> None:
    if trainer is not None and not trainer.is_world_process_zero():
        return
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
