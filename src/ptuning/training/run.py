"""Training and evaluation with `transformers.Trainer` (no training loop of our own).

`Trainer` brings the optimizer, schedule, gradient accumulation, DDP through Accelerate, bf16,
TensorBoard logging, length-grouped batches, per-epoch evaluation, best-checkpoint selection and
resumption with RNG state. We add what is ours: prompt-only checkpoints (through `PromptTrainer`),
task metrics, and resumption that skips a checkpoint a crash left half-written.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, set_seed

from ..checkpoint import RUN_ID, commit_staged, new_run_id, save_checkpoint, staging_dir
from ..core.checkpointing import set_activation_checkpointing
from ..core.precision import resolve_precision
from ..data import encode, make_collator, subsample
from ..data.load import EVAL_SUBSET_SEED, load_data
from ..methods import get_method
from ..model import PromptModel
from ..tasks import TaskSpec
from ..wording import plural
from .config import TrainConfig
from .defaults import for_task, task_kind
from .evaluation import EvalSet
from .output_dir import claim_output_dir
from .run_record import RUN_SETTINGS, check_output_dir, check_resume
from .trainer import (
    CHECKPOINTS,
    PromptTrainer,
    WallClock,
    last_complete_checkpoint,
    process_rank,
    run_callbacks,
    total_steps,
    training_arguments,
    world_size_of_run,
    write_json,
)


def train(cfg: TrainConfig, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Train, evaluate on the validation split, save the best prompt-only checkpoint and metrics.json.

    Several comma-separated tasks (or training files) train one shared prompt (`ptuning.training.multitask`).
    `callbacks` join the Trainer's in a single-task run (`ptuning tune` prunes trials through one).
    The run holds `cfg.output_dir` (`ptuning.training.output_dir.claim_output_dir`): a second run given the
    same folder is refused while this one writes (under DDP rank 0 holds it for all).

        >>> import ptuning
        >>> ptuning.train(ptuning.TrainConfig.build(task="sst2", epochs=1, output_dir="outputs/sst2"))
    """
    if process_rank() != 0:
        return _train(cfg, callbacks)
    with claim_output_dir(cfg.output_dir, overwrite=cfg.overwrite):
        return _train(cfg, callbacks)


def _train(cfg: TrainConfig, callbacks: list[TrainerCallback] | None) -> dict[str, Any]:
    # the method's own run (`ptuning.methods`): a prompt model's (`ptuning.training.multitask.train_prompt_model`
    # runs `run` on one task or several), a template's, ...
    return get_method(cfg.method).hook("train")(cfg, callbacks)


@dataclass
class RunTask:
    """One task of a run: its own settings (its task name and files), its data and subsets."""

    cfg: TrainConfig
    data: Any  # ptuning.data.TaskData
    train_examples: list[dict[str, Any]]
    eval_examples: list[dict[str, Any]]

    @property
    def spec(self) -> TaskSpec:
        return self.data.spec


class RunShape:
    """What differs between a run on one task and one on several (`run` calls these in order):
    the tasks, how the model is built, what the Trainer iterates and evaluates, what is reported."""

    def configs(self, cfg: TrainConfig) -> list[TrainConfig]:
        """One config per task (its task name and data files)."""
        return [cfg]

    def check(self, cfg: TrainConfig) -> None:
        """Settings this shape cannot run (one-line DataErrors), before anything loads."""

    def build(self, cfg: TrainConfig, specs: list[TaskSpec]) -> tuple[Any, Any, list[PromptModel]]:
        """(the model the Trainer trains, the tokenizer, one `PromptModel` per task)."""
        raise NotImplementedError

    def task_models(self, model) -> list[PromptModel]:
        """The task models of the (trained) model, in the order of the tasks."""
        raise NotImplementedError

    def prepare(self, cfg: TrainConfig, model, tokenizer, features: list[list[dict]]) -> tuple[list, int]:
        """(the training dataset, optimizer steps per epoch) from each task's encoded features."""
        raise NotImplementedError

    def trainer(
        self, model, args, dataset, eval_sets: dict[str, EvalSet], tokenizer, callbacks
    ) -> PromptTrainer:
        raise NotImplementedError

    def describe(
        self, cfg: TrainConfig, tasks: list[RunTask], model, length: int, steps_per_epoch: int
    ) -> str:
        """The line printed before training."""
        raise NotImplementedError

    def score_once(self, trainer, tasks: list[RunTask], cfg: TrainConfig, tokenizer, length: int) -> dict:
        """Metrics scored once after training, beside the validation ones (none by default)."""
        return {}

    def folder(self, output: Path, spec: TaskSpec) -> Path:
        """Where the task's checkpoint goes."""
        return output

    def validation(self, final: dict[str, Any], spec: TaskSpec, trainer) -> dict[str, Any]:
        """The task's metrics in the final evaluation (the best checkpoint's), without prefixes."""
        raise NotImplementedError

    def task_metrics(self, cfg, task, validation, sizes, trainer, train_seconds, dev_metrics) -> dict:
        """The metrics.json beside the task's checkpoint."""
        raise NotImplementedError

    def metrics(self, cfg, tasks, per_task, final, trainer, train_seconds, output) -> dict[str, Any]:
        """What `train` returns (and the run's own metrics.json where the tasks' are not it)."""
        raise NotImplementedError


def run(cfg: TrainConfig, shape: RunShape, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Train, evaluate and save a `PromptModel` run on 1..N tasks; `shape` holds what differs.

    The steps: seed, resume checks, subsets, model, eval sets, steps per epoch, arguments, clock,
    Trainer, the run's settings, training, the final evaluation, and per task a checkpoint with its
    train_config.json and metrics.json, written atomically under one run id."""
    shape.check(cfg)
    configs = shape.configs(cfg)
    set_seed(cfg.seed)
    tasks = []
    for task_cfg in configs:
        data = load_data(task_cfg)
        train_examples = subsample(data.train, cfg.max_train_samples, cfg.seed)
        tasks.append(
            RunTask(
                task_cfg,
                data,
                train_examples,
                subsample(data.validation, cfg.max_eval_samples, EVAL_SUBSET_SEED),
            )
        )
    # what the settings leave unset, the kind of task decides (several tasks: the first one's)
    cfg = for_task(cfg, task_kind(tasks[0].spec.task_type, tasks[0].data.train))
    output = Path(cfg.output_dir)
    run_id = check_resume(cfg, cfg.to_dict()) if cfg.resume else None
    check_output_dir(cfg)
    checkpoint_dir = output / CHECKPOINTS
    if not cfg.resume and process_rank() == 0:
        # another run's training checkpoints must never be taken for this run's by a later --resume
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    resume_from = (
        last_complete_checkpoint(checkpoint_dir, remove_incomplete=process_rank() == 0)
        if cfg.resume and checkpoint_dir.is_dir()
        else None
    )
    run_id = run_id or new_run_id()

    specs = [task.spec for task in tasks]

    model, tokenizer, task_models = shape.build(cfg, specs)
    if cfg.activation_checkpointing:  # the tasks share one backbone
        set_activation_checkpointing(task_models[0].backbone)
    if cfg.init_from:
        from .transfer import init_prompt_from

        print(f"prompt initialised from {init_prompt_from(task_models[0], cfg.init_from)} (head fresh)")
    length = min(cfg.max_seq_length, task_models[0].max_text_length)  # input prompts take positions
    pairs = cfg.prompt.pair_encoding  # how the features hold a text pair (the model reads them so)
    features = [
        encode(task.spec, task.train_examples, tokenizer, length, for_training=True, pair_encoding=pairs)
        for task in tasks
    ]
    eval_sets = {
        task.spec.name: EvalSet(task.spec, task.eval_examples, tokenizer, length, pair_encoding=pairs)
        for task in tasks
    }
    dataset, steps_per_epoch = shape.prepare(cfg, model, tokenizer, features)
    args = training_arguments(cfg, specs[0], checkpoint_dir, steps_per_epoch)
    clock = WallClock(resume_from)
    trainer = shape.trainer(
        model, args, dataset, eval_sets, tokenizer, [*run_callbacks(cfg, output, clock), *(callbacks or [])]
    )
    # the run's settings, flat as `TrainConfig.to_dict`; several tasks add each task's own
    settings = {**cfg.to_dict(), "task": ",".join(spec.name for spec in specs), RUN_ID: run_id}
    if len(tasks) > 1:
        settings["tasks"] = [_task_settings(task) for task in tasks]
    if trainer.is_world_process_zero():
        # beside the training checkpoints: what --resume compares with
        write_json(checkpoint_dir / RUN_SETTINGS, settings)
        if len(tasks) > 1:  # the output folder holds no checkpoint of its own, only the tasks'
            write_json(output / RUN_SETTINGS, settings)
        for spec in specs:
            for note in spec.notes:
                print(f"note: {note}")
        print(resolve_precision(cfg.bf16).describe())
        print(
            shape.describe(cfg, tasks, model, length, steps_per_epoch)
            + (f"; resuming from {resume_from}" if resume_from else "")
        )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = clock.seconds

    final = trainer.evaluate()  # the best checkpoint is loaded at the end of training
    dev_metrics = shape.score_once(trainer, tasks, cfg, tokenizer, length)
    trained = shape.task_models(trainer.accelerator.unwrap_model(trainer.model))
    if not trainer.is_world_process_zero():
        return {}
    per_task: dict[str, Any] = {}
    for task, task_model in zip(tasks, trained, strict=True):
        spec = task.spec
        validation = shape.validation(final, spec, trainer)
        if spec.null_answers and "null_threshold" in validation:  # predict answers as evaluated
            task_model.spec = replace(task_model.spec, null_threshold=float(validation["null_threshold"]))
        folder = shape.folder(output, spec)
        folder.mkdir(parents=True, exist_ok=True)
        staging = staging_dir(folder)
        sizes = save_checkpoint(
            task_model,
            staging,
            fold=True,
            inputs=task.cfg.input_format(),
            max_seq_length=cfg.max_seq_length,
            run_id=run_id,
        )
        # the settings `ptuning eval` reads (max_seq_length, the task's own files)
        write_json(staging / RUN_SETTINGS, {**settings, **_task_settings(task), RUN_ID: run_id})
        per_task[spec.name] = shape.task_metrics(
            cfg, task, validation, sizes, trainer, train_seconds, dev_metrics
        )
        write_json(staging / "metrics.json", per_task[spec.name])
        commit_staged(staging, folder)
    return shape.metrics(cfg, tasks, per_task, final, trainer, train_seconds, output)


def _task_settings(task: RunTask) -> dict[str, Any]:
    """The settings that are a task's own in a run on several (its name and data files)."""
    own = task.cfg.to_dict()
    return {
        "task": task.spec.name,
        "train_file": own["train_file"],
        "validation_file": own["validation_file"],
    }


class SingleTaskShape(RunShape):
    """A run on one task: a `PromptModel`, length-grouped batches, the checkpoint in --output-dir."""

    shallow_cache = None

    def build(self, cfg, specs):
        model, tokenizer = PromptModel.from_backbone(cfg.backbone, specs[0], cfg.prompt)
        return model, tokenizer, [model]

    def task_models(self, model) -> list[PromptModel]:
        return [model]

    def prepare(self, cfg, model, tokenizer, features):
        (train_features,) = features
        self.collator = make_collator(model.spec, tokenizer)
        if cfg.cache_shallow_layers:
            from ..core.shallow_cache import attach_shallow_cache

            self.shallow_cache = attach_shallow_cache(
                model, train_features, make_collator(model.spec, tokenizer), batch_size=cfg.eval_batch_size
            )
            print(self.shallow_cache.describe())
        global_batch = cfg.batch_size * cfg.grad_accum * world_size_of_run()
        return train_features, max(1, math.ceil(len(train_features) / global_batch))

    def trainer(self, model, args, dataset, eval_sets, tokenizer, callbacks):
        (eval_set,) = eval_sets.values()
        return PromptTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            eval_dataset=eval_set.features,
            data_collator=self.collator,
            compute_metrics=lambda p: eval_set.metrics(p.predictions, p.label_ids),
            preprocess_logits_for_metrics=eval_set.head.reduce,
            callbacks=callbacks,
        )

    def describe(self, cfg, tasks, model, length, steps_per_epoch):
        (task,) = tasks
        spec = task.spec
        cut = ""
        if length < cfg.max_seq_length:
            cut = (
                f" (text cut to {length}: the input prompt takes {plural(cfg.prompt.prefix_len, 'position')})"
            )
        return (
            f"task {spec.name} ({spec.task_type}), backbone {cfg.backbone}, method {cfg.method}: "
            f"{model.count_parameters().describe()}; train {plural(len(task.train_examples), 'example')}, "
            f"eval {len(task.eval_examples)}; max_seq_length {cfg.max_seq_length}{cut}, prefix_len "
            f"{cfg.prompt.prefix_len}, {_planned_length(cfg, steps_per_epoch)}, lr {cfg.lr}, batch "
            f"{cfg.batch_size}x{cfg.grad_accum}x{world_size_of_run()}, pooling {cfg.prompt.pooling}"
            + (
                ", text pairs read apart (--pair-encoding separate)"
                if cfg.prompt.pair_encoding == "separate"
                else ""
            )
        )

    def score_once(self, trainer, tasks, cfg, tokenizer, length):
        (task,) = tasks
        return _score_once(trainer, task.data, cfg, tokenizer, length)

    def validation(self, final, spec, trainer):
        validation = {k.removeprefix("eval_"): v for k, v in final.items()}
        _, best_epoch = _best_checkpoint_position(trainer.state)
        if best_epoch is not None:  # the epoch of the kept checkpoint, not the epoch training ended in
            validation["epoch"] = best_epoch
        return validation

    def task_metrics(self, cfg, task, validation, sizes, trainer, train_seconds, dev_metrics):
        spec = task.spec
        model = trainer.accelerator.unwrap_model(trainer.model)
        count = model.count_parameters()
        best_step, best_epoch = _best_checkpoint_position(trainer.state)
        return {
            "task": spec.name,
            "task_type": spec.task_type,
            "method": cfg.method,
            "backbone": cfg.backbone,
            "trainable_params": count.trainable,
            "total_params": count.total,
            "trainable_share": count.share,
            "train_seconds": round(train_seconds, 2),
            "precision": resolve_precision(cfg.bf16).name,
            "train_examples": len(task.train_examples),
            "eval_examples": len(task.eval_examples),
            "global_steps": trainer.state.global_step,
            "epochs_done": round(float(trainer.state.epoch or 0.0), 4),
            # --epochs auto: the validation metric stopped improving before the --max-epochs cap
            "stopped_early": cfg.auto_epochs and trainer.state.global_step < trainer.state.max_steps,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_step": best_step,
            "best_epoch": best_epoch,
            **sizes,
            "metric": spec.metric,
            "validation": validation,
            **dev_metrics,
            "notes": list(spec.notes),
            **({"shallow_cache": self.shallow_cache.summary()} if self.shallow_cache is not None else {}),
        }

    def metrics(self, cfg, tasks, per_task, final, trainer, train_seconds, output):
        (metrics,) = per_task.values()
        return metrics


def _score_once(trainer, data, cfg: TrainConfig, tokenizer, length: int) -> dict[str, Any]:
    """With --validation-split: the held-out split chose the checkpoint, and the task's own validation
    data (`data.test`, where there is any) is scored once with it, as "dev"."""
    if cfg.validation_split is None:
        return {}
    out: dict[str, Any] = {
        "validation_split": {
            "fraction": cfg.validation_split,
            "seed": EVAL_SUBSET_SEED,
            "train_examples": len(data.train),
            "held_out_examples": len(data.validation),
        }
    }
    if data.test:
        dev_set = EvalSet(
            data.spec,
            subsample(data.test, cfg.max_eval_samples, EVAL_SUBSET_SEED),
            tokenizer,
            length,
            pair_encoding=cfg.prompt.pair_encoding,
        )
        trainer.compute_metrics = lambda p: dev_set.metrics(p.predictions, p.label_ids)
        raw = trainer.evaluate(dev_set.features, metric_key_prefix="dev")
        out["dev"] = {k.removeprefix("dev_"): v for k, v in raw.items()}
    return out


def _planned_length(cfg: TrainConfig, steps_per_epoch: int) -> str:
    """How long the run trains, as it will run: --max-steps wins over --epochs."""
    per_epoch = plural(steps_per_epoch, "step")
    if cfg.max_steps > 0:
        return (
            f"max_steps {cfg.max_steps} ({plural(cfg.max_steps / steps_per_epoch, 'epoch')} of {per_epoch})"
        )
    if cfg.auto_epochs:
        return (
            f"epochs auto (at most {plural(cfg.max_epochs, 'epoch')} of {per_epoch}; stops after "
            f"{plural(cfg.patience, 'evaluation')} without a gain over {cfg.min_delta:g}"
            + (f", counted from epoch {cfg.min_epochs}" if cfg.min_epochs else "")
            + ")"
        )
    return f"epochs {cfg.epochs:g} ({plural(total_steps(cfg, steps_per_epoch), 'step')})"


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
