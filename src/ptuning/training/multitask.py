"""Multi-task deep prompts (MPT-2 in the P-Tuning v2 paper): one prompt shared by several tasks, one head each.

``ptuning train --task conll03,conll04`` builds one `PromptModel` per task on one frozen backbone;
the models share the prompt module (the same `PrefixEncoder` object), each has its own head. Batches
are single-task, drawn by the rule of `ptuning.training.sampling` (``--task-sampling proportional`` or
``temperature``). Every epoch each task is evaluated on its validation split; the best checkpoint is
the one with the best mean of the tasks' primary metrics (``average``).

The output folder holds one ordinary single-task checkpoint per task (``<output-dir>/<task>/``: the
shared prompt and that task's head), so ``ptuning eval``, ``predict`` and ``serve`` load a task of it
unchanged (``ptuning serve --prompt conll04=<output-dir>/conll04``), plus ``multitask.json`` (the
tasks), ``metrics.json`` (every task's dev metrics) and ``train_config.json``. ``--init-from
<output-dir>`` starts a single-task run from the shared prompt (see `ptuning.training.transfer`).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from ..checkpoint import load_training_state, save_checkpoint
from ..data import make_collator
from ..data.features import Collator
from ..errors import DataError
from ..model import PromptModel
from ..tasks import TaskSpec
from .config import TrainConfig
from .evaluation import EvalSet
from .run import RunShape, SingleTaskShape, run
from .sampling import SAMPLING_RULES, TaskBatchSampler
from .trainer import PromptTrainer, world_size_of_run, write_json
from .transfer import MULTITASK_FILE

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
TASK_KEY = "task"  # index of a feature's task, and of a batch's task


def task_names(task: str) -> list[str]:
    """``"conll03,conll04"`` -> ``["conll03", "conll04"]`` (a task given twice is an error)."""
    names = [name.strip() for name in task.split(",") if name.strip()]
    if not names:
        raise DataError(f"--task {task!r} names no task")
    if len(set(names)) != len(names):
        raise DataError(f"--task {task!r} names a task twice")
    return names


def task_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """One config per task: the built-in tasks of ``--task a,b``, or the user files of ``--train-file
    a.csv,b.csv --validation-file a-dev.csv,b-dev.csv`` (same --task-type and columns; named by
    ``--task`` when it lists one name per file, else by the training files' stems)."""
    if not (cfg.train_file or cfg.validation_file):
        return [replace(cfg, task=name) for name in task_names(cfg.task)]
    trains = [f.strip() for f in (cfg.train_file or "").split(",") if f.strip()]
    validations = [f.strip() for f in (cfg.validation_file or "").split(",") if f.strip()]
    if len(trains) != len(validations):
        raise DataError(
            f"--train-file lists {len(trains)} files and --validation-file {len(validations)}: give one of each per task"
        )
    default = cfg.task == TrainConfig.task  # --task not given (as in `load_data`): the files' stems
    names = [Path(f).stem for f in trains] if default else task_names(cfg.task)
    if len(names) != len(trains) or len(set(names)) != len(names) or not all(map(_NAME.match, names)):
        raise DataError(
            f"name the {len(trains)} tasks with --task a,b,... (one distinct name of letters, digits, - or _ "
            f"per --train-file; the names become sub-folders)"
        )
    return [
        replace(cfg, task=name, train_file=train, validation_file=validation)
        for name, train, validation in zip(names, trains, validations, strict=True)
    ]


class MultiTaskModel(nn.Module):
    """One `PromptModel` per task, sharing the backbone and the prompt; a batch's ``task`` picks the model."""

    def __init__(self, models: dict[str, PromptModel]) -> None:
        super().__init__()
        self.tasks = list(models)
        self.models = nn.ModuleDict(models)

    @classmethod
    def build(cls, backbone_name: str, specs: list[TaskSpec], config) -> tuple[MultiTaskModel, Any]:
        """The first task's model is built exactly as single-task training builds it (same random
        draws), the others on its backbone with its prompt module."""
        first, tokenizer = PromptModel.from_backbone(backbone_name, specs[0], config)
        models = {specs[0].name: first}
        for spec in specs[1:]:
            model = PromptModel(
                first.backbone,
                spec,
                config,
                backbone_name=backbone_name,
                backbone_fingerprint=first.backbone_fingerprint,
            )
            model.prefix_encoder, model.input_prompt = first.prefix_encoder, first.input_prompt
            models[spec.name] = model
        return cls(models), tokenizer

    def model(self, task: str) -> PromptModel:
        return self.models[task]

    def count_parameters(self):
        count = self.models[self.tasks[0]].count_parameters()
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        heads = sum(p.numel() for name in self.tasks[1:] for p in self.models[name].head.parameters())
        return replace(count, trainable=trainable, total=count.total + heads)

    def forward(self, task: torch.Tensor, **inputs):
        index = int(task.reshape(-1)[0])
        return self.models[self.tasks[index]](**inputs)


class TaskCollator:
    """Pads a single-task batch with its task's collator and adds the ``task`` index of every row."""

    def __init__(self, collators: list[Collator]) -> None:
        self.collators = collators

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        index = features[0][TASK_KEY]
        if any(feature[TASK_KEY] != index for feature in features):
            raise ValueError("a multi-task batch mixes tasks; batches must be single-task")
        batch = self.collators[index](features)
        batch[TASK_KEY] = torch.full((len(features),), index, dtype=torch.long)
        return batch


class MultiTaskTrainer(PromptTrainer):
    """`PromptTrainer` over a `MultiTaskModel`: task-by-task batches, evaluation of every task, one
    sub-checkpoint per task."""

    def __init__(
        self, *args, eval_sets: dict[str, EvalSet], batch_sampler: TaskBatchSampler, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.eval_sets = eval_sets
        self.batch_sampler = batch_sampler

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(
            self.train_dataset, batch_sampler=self.batch_sampler, collate_fn=self.data_collator
        )
        return self.accelerator.prepare(loader)

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Each task on its own validation features; ``<prefix>_average`` is the mean primary metric."""
        metrics: dict[str, float] = {}
        primary = []
        for index, (name, eval_set) in enumerate(self.eval_sets.items()):
            self.compute_metrics = lambda p, s=eval_set: s.metrics(p.predictions, p.label_ids)
            self.preprocess_logits_for_metrics = eval_set.head.reduce
            self.label_names = list(eval_set.head.label_names)
            features = [{**feature, TASK_KEY: index} for feature in eval_set.features]
            prefix = f"{metric_key_prefix}_{name}"
            metrics.update(super().evaluate(features, ignore_keys, metric_key_prefix=prefix))
            primary.append(metrics[f"{prefix}_{eval_set.spec.metric}"])
        metrics[f"{metric_key_prefix}_average"] = sum(primary) / len(primary)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = Path(output_dir or self.args.output_dir)
        if self.args.should_save:
            model = self.accelerator.unwrap_model(self.model)
            for name in model.tasks:
                save_checkpoint(model.model(name), output_dir / name, fold=False)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = model or self.model
        for name in model.tasks:
            load_training_state(model.model(name), Path(resume_from_checkpoint) / name)

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)


def train_prompt_model(cfg: TrainConfig, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """The run of a method trained as a `PromptModel` (its `ptuning.methods` train hook): on one
    task, or on several comma-separated tasks (or training files) sharing one prompt."""
    if "," in cfg.task or (isinstance(cfg.train_file, str) and "," in cfg.train_file):
        return run(cfg, MultiTaskShape(), callbacks)
    return run(cfg, SingleTaskShape(), callbacks)


def train_multitask(cfg: TrainConfig) -> dict[str, Any]:
    """Train one shared prompt on several tasks (`task_configs`); see the module docstring."""
    return run(cfg, MultiTaskShape())


class MultiTaskShape(RunShape):
    """`ptuning.training.run` on several tasks: a `MultiTaskModel`, single-task batches drawn by
    the --task-sampling rule, every task evaluated, one sub-checkpoint per task."""

    def configs(self, cfg: TrainConfig) -> list[TrainConfig]:
        return task_configs(cfg)

    def check(self, cfg: TrainConfig) -> None:
        if cfg.task_sampling not in SAMPLING_RULES:
            raise DataError(
                f"unknown --task-sampling {cfg.task_sampling!r}; known: {', '.join(SAMPLING_RULES)}"
            )
        if cfg.task_sampling == "temperature" and cfg.sampling_temperature <= 0:
            raise DataError(f"--sampling-temperature must be > 0, got {cfg.sampling_temperature}")
        if world_size_of_run() > 1:
            raise DataError("multi-task training runs in one process (DDP is not supported for it yet)")
        if cfg.cache_shallow_layers:
            raise DataError("--cache-shallow-layers is not supported with several tasks")

    def build(self, cfg, specs):
        model, tokenizer = MultiTaskModel.build(cfg.backbone, specs, cfg.prompt)
        self.names = [spec.name for spec in specs]
        self.collator = TaskCollator([make_collator(spec, tokenizer) for spec in specs])
        return model, tokenizer, self.task_models(model)

    def task_models(self, model: MultiTaskModel) -> list[PromptModel]:
        return [model.model(name) for name in self.names]

    def prepare(self, cfg, model, tokenizer, features):
        tagged = [
            [{**feature, TASK_KEY: index} for feature in task_features]
            for index, task_features in enumerate(features)
        ]
        self.sampler = TaskBatchSampler(
            tagged,
            cfg.batch_size,
            cfg.batch_size * cfg.grad_accum,
            cfg.seed,
            cfg.task_sampling,
            cfg.sampling_temperature,
        )
        dataset = [feature for task_features in tagged for feature in task_features]
        return dataset, max(1, math.ceil(len(self.sampler) / cfg.grad_accum))

    def trainer(self, model, args, dataset, eval_sets, tokenizer, callbacks):
        args.metric_for_best_model = "eval_average"
        return MultiTaskTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            eval_dataset={name: eval_set.features for name, eval_set in eval_sets.items()},
            data_collator=self.collator,
            callbacks=callbacks,
            eval_sets=eval_sets,
            batch_sampler=self.sampler,
        )

    def describe(self, cfg, tasks, model, length, steps_per_epoch):
        sizes = ", ".join(f"{task.spec.name} {len(task.train_examples)}" for task in tasks)
        return (
            f"multi-task {'+'.join(self.names)}, backbone {cfg.backbone}, method {cfg.method}: "
            f"{model.count_parameters().describe()}; train {sizes} examples; {cfg.task_sampling} task sampling"
            + (f" (T={cfg.sampling_temperature})" if cfg.task_sampling == "temperature" else "")
            + f", batches per epoch {self._batches()}; lr {cfg.lr}, batch {cfg.batch_size}"
        )

    def _batches(self) -> dict[str, int]:
        return dict(zip(self.names, self.sampler.counts, strict=True))

    def folder(self, output: Path, spec: TaskSpec) -> Path:
        return output / spec.name

    def validation(self, final, spec, trainer):
        prefix = f"eval_{spec.name}_"
        return {k.removeprefix(prefix): v for k, v in final.items() if k.startswith(prefix)}

    def task_metrics(self, cfg, task, validation, sizes, trainer, train_seconds, dev_metrics):
        spec = task.spec
        return {
            "task": spec.name,
            "task_type": spec.task_type,
            "train_examples": len(task.train_examples),
            "eval_examples": len(task.eval_examples),
            "metric": spec.metric,
            "validation": validation,
            **sizes,
            "method": cfg.method,
            "backbone": cfg.backbone,
            "multitask": self.names,
        }

    def metrics(self, cfg, tasks, per_task, final, trainer, train_seconds, output):
        count = trainer.accelerator.unwrap_model(trainer.model).count_parameters()
        metrics = {
            "tasks": self.names,
            "method": cfg.method,
            "backbone": cfg.backbone,
            "task_sampling": cfg.task_sampling,
            "sampling_temperature": cfg.sampling_temperature if cfg.task_sampling == "temperature" else None,
            "batches_per_epoch": self._batches(),
            "trainable_params": count.trainable,
            "total_params": count.total,
            "train_seconds": round(train_seconds, 2),
            "global_steps": trainer.state.global_step,
            "epochs_done": round(float(trainer.state.epoch or 0.0), 4),
            "stopped_early": cfg.auto_epochs and trainer.state.global_step < trainer.state.max_steps,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "average": final["eval_average"],
            # each task's metrics.json less what the run's own entries say
            "per_task": {
                name: {k: v for k, v in task.items() if k not in ("method", "backbone", "multitask")}
                for name, task in per_task.items()
            },
        }
        write_json(output / MULTITASK_FILE, {"tasks": self.names})
        write_json(output / "metrics.json", metrics)
        return metrics
