"""Training and evaluation with `transformers.Trainer` (no training loop of our own).

`Trainer` brings the optimizer, schedule, gradient accumulation, DDP through Accelerate, bf16,
TensorBoard logging, length-grouped batches, per-epoch evaluation, best-checkpoint selection and
resumption with RNG state. We add what is ours: prompt-only checkpoints (through `PromptTrainer`),
task metrics, and resumption that skips a checkpoint a crash left half-written.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, set_seed

from ..checkpoint import CONFIG_NAME, RUN_ID, commit_staged, new_run_id, save_checkpoint, staging_dir
from ..core.config import HANDCRAFTED
from ..core.precision import resolve_precision
from ..data import encode, make_collator, subsample
from ..data.load import EVAL_SUBSET_SEED, load_data
from ..errors import DataError
from ..model import PromptModel
from ..wording import plural
from .config import TrainConfig
from .evaluation import EvalSet
from .output_dir import claim_output_dir
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

RUN_SETTINGS = "train_config.json"


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


# keys of train_config.json that do not make a resumed run another run
NOT_SETTINGS = ("output_dir", "resume", "overwrite", "resume_with_changes", "progress", RUN_ID)


def run_settings(output: Path) -> dict[str, Any] | None:
    """The settings of the run whose training checkpoints are in `output` (the record written when
    it started, `checkpoints/train_config.json`), else those of its finished checkpoint."""
    for path in (Path(output) / CHECKPOINTS / RUN_SETTINGS, Path(output) / RUN_SETTINGS):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            return data
    return None


def check_resume(cfg: TrainConfig, settings: dict[str, Any]) -> str | None:
    """With `cfg.resume`: refuse settings that differ from the run's in `cfg.output_dir` (one line
    naming them) unless `cfg.resume_with_changes`. Returns the run's id, which the resumed run keeps
    (None when there is no run there, or it has none)."""
    before = run_settings(Path(cfg.output_dir))
    if before is None:
        return None
    now = json.loads(json.dumps(settings, default=str))  # as train_config.json holds them
    changed = sorted(
        key
        for key in set(before) & set(now)  # a key another version lacks is no change
        if key not in NOT_SETTINGS and key != "task" and before[key] != now[key]
    )
    if _trained_on(before) != _trained_on(now):
        changed.insert(0, "task")
    if changed and not cfg.resume_with_changes:
        shown = "; ".join(f"{key} {before.get(key)!r} there, {now.get(key)!r} now" for key in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise DataError(
            f"--resume: {cfg.output_dir} is a run with other settings ({shown}{more}): give its own "
            "settings, or --resume-with-changes to continue it with these"
        )
    run_id = before.get(RUN_ID)
    return run_id if isinstance(run_id, str) and run_id else None


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
    if cfg.method == HANDCRAFTED:
        from ..handcrafted.run import train_handcrafted

        return train_handcrafted(cfg)
    if "," in cfg.task or (isinstance(cfg.train_file, str) and "," in cfg.train_file):
        from .multitask import train_multitask

        return train_multitask(cfg)
    set_seed(cfg.seed)
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

    data = load_data(cfg)
    spec = data.spec
    train_examples = subsample(data.train, cfg.max_train_samples, cfg.seed)
    eval_examples = subsample(data.validation, cfg.max_eval_samples, EVAL_SUBSET_SEED)

    model, tokenizer = PromptModel.from_backbone(cfg.backbone, spec, cfg.prompt)
    if cfg.init_from:
        from .transfer import init_prompt_from

        print(f"prompt initialised from {init_prompt_from(model, cfg.init_from)} (head fresh)")
    length = min(cfg.max_seq_length, model.max_text_length)  # prompt tuning's P vectors take positions
    train_features = encode(spec, train_examples, tokenizer, length, for_training=True)
    eval_set = EvalSet(spec, eval_examples, tokenizer, length)
    shallow_cache = None
    if cfg.cache_shallow_layers:
        from ..core.shallow_cache import attach_shallow_cache

        shallow_cache = attach_shallow_cache(
            model, train_features, make_collator(spec, tokenizer), batch_size=cfg.eval_batch_size
        )
        print(shallow_cache.describe())

    global_batch = cfg.batch_size * cfg.grad_accum * world_size_of_run()
    steps_per_epoch = max(1, math.ceil(len(train_features) / global_batch))
    args = training_arguments(cfg, spec, checkpoint_dir, steps_per_epoch)
    clock = WallClock(resume_from)
    trainer = PromptTrainer(
        model=model,
        args=args,
        train_dataset=train_features,
        eval_dataset=eval_set.features,
        data_collator=make_collator(spec, tokenizer),
        compute_metrics=lambda p: eval_set.metrics(p.predictions, p.label_ids),
        preprocess_logits_for_metrics=eval_set.head.reduce,
        callbacks=[*run_callbacks(cfg, output, clock), *(callbacks or [])],
    )
    settings = {**cfg.to_dict(), "task": spec.name, RUN_ID: run_id}
    if trainer.is_world_process_zero():
        # the running run's settings, beside its training checkpoints: what --resume compares with;
        # train_config.json beside the final checkpoint is written with it, at the end
        write_json(checkpoint_dir / RUN_SETTINGS, settings)
        for note in spec.notes:
            print(f"note: {note}")
        print(resolve_precision(cfg.bf16).describe())
        count = model.count_parameters()
        cut = ""
        if length < cfg.max_seq_length:
            cut = (
                f" (text cut to {length}: the input prompt takes {plural(cfg.prompt.prefix_len, 'position')})"
            )
        print(
            f"task {spec.name} ({spec.task_type}), backbone {cfg.backbone}, method {cfg.method}: "
            f"{count.describe()}; train {plural(len(train_examples), 'example')}, eval {len(eval_examples)}; "
            f"max_seq_length {cfg.max_seq_length}{cut}, prefix_len {cfg.prompt.prefix_len}, "
            f"{_planned_length(cfg, steps_per_epoch)}, "
            f"lr {cfg.lr}, batch {cfg.batch_size}x{cfg.grad_accum}x{world_size_of_run()}, pooling {cfg.prompt.pooling}"
            + (f"; resuming from {resume_from}" if resume_from else "")
        )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = clock.seconds

    eval_metrics = trainer.evaluate()  # the best checkpoint is loaded at the end of training
    dev_metrics = _score_once(trainer, data, cfg, tokenizer, length)
    model = trainer.accelerator.unwrap_model(trainer.model)
    metrics: dict[str, Any] = {}
    if spec.null_answers and "eval_null_threshold" in eval_metrics:  # predict answers as evaluated
        model.spec = replace(model.spec, null_threshold=float(eval_metrics["eval_null_threshold"]))
    if trainer.is_world_process_zero():
        staging = staging_dir(output)
        sizes = save_checkpoint(
            model,
            staging,
            fold=True,
            inputs=cfg.input_format(),
            max_seq_length=cfg.max_seq_length,
            run_id=run_id,
        )
        write_json(staging / RUN_SETTINGS, settings)
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
            **({"shallow_cache": shallow_cache.summary()} if shallow_cache is not None else {}),
        }
        write_json(staging / "metrics.json", metrics)
        commit_staged(staging, output)
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
            data.spec, subsample(data.test, cfg.max_eval_samples, EVAL_SUBSET_SEED), tokenizer, length
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
            f"{plural(cfg.patience, 'evaluation')} without a gain over {cfg.min_delta:g})"
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
