"""`ptuning train`: train a prompt method on a task and save a prompt-only checkpoint."""

from __future__ import annotations

import argparse
import json

_DESCRIPTION = """Train P-Tuning v2 (or a baseline) on a built-in task or on your own files, evaluate on the
validation split every epoch, keep the best checkpoint, and write into --output-dir
(default: outputs/<task>-<method>; with your own files the task is the training file's name less
a _train suffix: tickets_train.csv writes outputs/tickets-p-tuning-v2):
  prompt.safetensors + ptuning_config.json   the prompt-only checkpoint (the MLP folded away; it also
                                              records the input columns and max sequence length)
  metrics.json                                task, method, backbone, parameters, seconds, dev metrics
  train_config.json                           every setting used
  checkpoints/ tensorboard/                   resumable training state and logs

With no options it runs the main job: P-Tuning v2 on SST-2 with MiniLM on the CPU, sized to
finish within 5 minutes on 2 cores ({samples:,} training sentences, {epochs} epochs, {length} tokens).

What you leave unset the kind of task decides (train_config.json records what was used):
{table}
Every other method keeps its own learning rate (prompt-tuning 3e-2, prefix-tuning and any
--prefix-projection 1e-3). Unless --epochs N is given a run trains with --epochs auto: it evaluates
every epoch and stops after --patience {patience} evaluations without a gain, keeping the best
checkpoint. Your own data without --validation-file holds out {split:.0%} of the training data
(stratified by label, the same examples whatever --seed) to select on.

tasks: sst2 rte mrpc cola stsb qnli boolq cb copa superglue-rte wsc multirc wic conll03 conll04 conll05 squad squad2
your own data: --train-file/--validation-file (CSV, TSV, JSONL, JSON, Parquet, Arrow or a
save_to_disk folder for classification or regression; CoNLL columns for --task-type
token_classification; SQuAD JSON for --task-type question_answering).
A folder holding a checkpoint of another task or other training data is not replaced unless
--overwrite (or --resume) is given.

examples:
  ptuning train
  ptuning train --task rte                  # --epochs auto, P 64, lr 2e-2: the defaults of text pairs
  ptuning train --task rte --epochs 20 --prefix-len 32 --max-train-samples 1000
  ptuning train --task rte --patience 3 --max-epochs 50   # until dev accuracy stops rising, at most 50
  ptuning train --task conll03 --method prompt-tuning --lr 3e-2
  ptuning train --train-file my.csv --validation-file dev.csv --text-column review --label-column stars
  ptuning train --output-dir outputs/rte-p-tuning-v2 --task rte --resume   # continue after a crash
  ptuning train --method handcrafted --max-train-samples 0   # zero-shot template + verbalizer
  ptuning train --method handcrafted --template "{{text}} It was {{mask}}." --verbalizer 'negative=bad,positive=good'
  ptuning train --task conll03,conll04      # one prompt, a head per task: outputs/conll03+conll04-p-tuning-v2
  ptuning train --task conll04 --init-from outputs/conll03+conll04-p-tuning-v2   # then tune on one task
  ptuning train --config outputs/tune-rte-p-tuning-v2/best_config.json --seed 1   # ptuning tune's best"""


def description() -> str:
    """The command's description, with the main job and the defaults by kind of task filled in from
    where they live."""
    from ..tasks import DEFAULT_VALIDATION_SPLIT
    from ..training import config
    from ..training.defaults import table

    return _DESCRIPTION.format(
        samples=config.MAIN_JOB_TRAIN_SAMPLES,
        epochs=config.MAIN_JOB_EPOCHS,
        length=config.MAIN_JOB_MAX_SEQ_LENGTH,
        table=table(),
        patience=config.TrainConfig.__dataclass_fields__["patience"].default,
        split=DEFAULT_VALIDATION_SPLIT,
    )


DESCRIPTION = description()

GROUPS = ("what to train", "prompt", "optimisation", "data", "output")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every TrainConfig and PromptConfig field (defaults and help from the fields),
    then --quiet and --config."""
    from ..training.config import TrainConfig
    from .fields import add_field_options

    groups = add_field_options(
        parser, TrainConfig, {name: parser.add_argument_group(name) for name in GROUPS}
    )
    out = groups["output"]
    out.add_argument(
        "--quiet",
        action="store_true",
        help="print only the final metrics: no progress bar, no line per epoch (default: a progress "
        "bar on a terminal, else a line per epoch)",
    )
    out.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help='a JSON object of these settings, option names as keys ("prefix_len": 16), e.g. the '
        "best_config.json of `ptuning tune`; options given on the command line override it",
    )


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of parsed options (one-line UserErrors for combinations that cannot run)."""
    from ..errors import UserError
    from ..training.config import TrainConfig
    from .fields import values_from

    settings = values_from(args, TrainConfig)
    if settings.get("cache_shallow_layers") and settings.get("prompt_layers") is None:
        raise UserError("--cache-shallow-layers needs --prompt-layers k (prompts in the top k layers only)")
    _check_method_options(args, settings)
    try:
        return TrainConfig.build(**settings, progress=not getattr(args, "quiet", False))
    except ValueError as exc:  # a PromptConfig check (e.g. --prefix-init vocab with --prefix-projection)
        raise UserError(str(exc)) from None


def _write_failure(exc: BaseException, output_dir: str) -> Exception | None:
    """A one-line UserError for a failed write during training (a full disk), else None.

    Our own files say which file failed (CheckpointWriteError); the Trainer's torch.save of its
    optimizer state fails with "[enforce fail at inline_container.cc] unexpected pos" or
    "basic_ios::clear: iostream error", which say nothing of the disk, so those are told by the
    free space left."""
    import errno
    import shutil

    from ..errors import UserError

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"no space left on device writing {exc.filename or output_dir}")
    if isinstance(exc, RuntimeError):
        try:
            full = shutil.disk_usage(output_dir).free < 1 << 20
        except OSError:
            full = False
        if full:
            return UserError(f"no space left on device writing a training checkpoint in {output_dir}")
        if any(word in str(exc) for word in ("inline_container", "PytorchStreamWriter", "iostream error")):
            return UserError(
                f"writing a training checkpoint in {output_dir} failed: {str(exc).splitlines()[0]}"
            )
    return None


def _check_method_options(args: argparse.Namespace, settings: dict) -> None:
    """Refuse options of another method (--template without --method handcrafted), then let the
    method check its own before any data or model loads (`ptuning.methods`: one-line errors)."""
    from ..core.config import DEFAULT_METHOD
    from ..errors import UserError
    from ..methods import get_method, method_names

    method = get_method(settings.get("method") or DEFAULT_METHOD)
    for other in map(get_method, method_names()):
        given = [
            name for name in other.options if name not in method.options and settings.get(name) is not None
        ]
        if given:
            flags = " and ".join(f"--{name.replace('_', '-')}" for name in other.options)
            raise UserError(f"{flags} go with --method {other.name}")
    if method.check_options:
        method.hook("check_options")(args)


def with_config_file(args: argparse.Namespace) -> argparse.Namespace:
    """`args` completed from --config FILE (the command line wins); bad files are one-line errors."""
    from .settings_file import SettingsError, apply_settings_file

    try:
        return apply_settings_file(args, add_arguments)
    except SettingsError as exc:
        from ..errors import UserError

        raise UserError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from .preflight import check_before_loading
    from .settings_file import explicit_options

    cfg = config_from_args(with_config_file(args))
    # settings and files first: importing the model code takes seconds, a wrong path should not
    check_before_loading(cfg, explicit_options(add_arguments, getattr(args, "_argv", [])))
    from ..training.run import train

    try:
        metrics = train(cfg)
    except (OSError, RuntimeError) as exc:
        failure = _write_failure(exc, cfg.output_dir)
        if failure is None:
            raise
        raise failure from None
    if metrics and "tasks" in metrics:  # several tasks: one sub-checkpoint each
        print(
            json.dumps(
                {
                    "average": metrics["average"],
                    **{name: task["validation"] for name, task in metrics["per_task"].items()},
                },
                indent=2,
            )
        )
        print(f"checkpoints: {', '.join(f'{cfg.output_dir}/{name}' for name in metrics['tasks'])}")
    elif metrics:
        keys = (
            "task",
            "method",
            "backbone",
            "trainable_params",
            "train_seconds",
            "global_steps",
            "epochs_done",
            *(("stopped_early", "best_epoch") if cfg.auto_epochs else ()),
        )
        summary = {k: metrics[k] for k in keys if k in metrics}  # handcrafted runs take no steps
        summary.update(metrics["validation"])  # "epoch": the kept (best) checkpoint's
        print(json.dumps(summary, indent=2))
        print(
            f"checkpoint: {cfg.output_dir} ({metrics['checkpoint_bytes']:,} bytes; backbone {metrics['backbone_bytes']:,} bytes)"
        )
    return 0
