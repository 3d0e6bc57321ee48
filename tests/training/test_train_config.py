"""One source of defaults: TrainConfig (holding a PromptConfig) and the `ptuning train` options
generated from their fields."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from ptuning.commands import train as train_command
from ptuning.commands.fields import field_options
from ptuning.core.config import PromptConfig
from ptuning.errors import UserError
from ptuning.training.config import MAIN_JOB_TRAIN_SAMPLES, TrainConfig


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_library_default_is_the_command_default():
    assert train_command.config_from_args(_parse()) == TrainConfig()
    # the main job's prompt: the library's, with one prompt-dropout mask per batch (its time budget)
    assert TrainConfig().prompt == dataclasses.replace(PromptConfig(), prompt_dropout_per_example=False)
    assert TrainConfig().max_train_samples == MAIN_JOB_TRAIN_SAMPLES  # the main job
    assert TrainConfig().prompt.pooling == PromptConfig().pooling == "mean"


def test_every_prompt_setting_is_an_option():
    dests = {option.path[-1] for option in field_options(TrainConfig)}
    prompt_fields = {f.name for f in dataclasses.fields(PromptConfig)} - {"method"}  # TrainConfig.method
    assert prompt_fields <= dests
    cfg = train_command.config_from_args(
        _parse(
            "--init-std", "0.02", "--prefix-init", "vocab", "--prompt-dropout-per-example", "--pooling", "cls"
        )
    )
    assert (cfg.prompt.init_std, cfg.prompt.prefix_init, cfg.prompt.prompt_dropout_per_example) == (
        0.02,
        "vocab",
        True,
    )
    assert cfg.prompt.pooling == "cls"


def test_help_shows_each_default_from_its_field():
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    text = parser.format_help()
    assert "prompt length P (virtual tokens) (default: the kind of task's: 32" in " ".join(text.split())
    assert "(default: random)" in text


def test_choices_come_from_the_literals():
    with pytest.raises(SystemExit):
        _parse("--pooling", "max")
    with pytest.raises(SystemExit):
        _parse("--prefix-init", "zeros")


def test_method_reaches_the_prompt_config():
    cfg = train_command.config_from_args(_parse("--method", "prompt-tuning", "--lr", "0.1"))
    assert cfg.method == cfg.prompt.method == "prompt-tuning"
    assert cfg.lr == 0.1
    assert TrainConfig.build(method="fine-tune").prompt.method == "fine-tune"


def test_flat_settings_round_trip_through_json():
    cfg = TrainConfig.build(task="rte", method="prompt-tuning", prefix_len=8, lr=0.05, init_std=0.5, seed=3)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert "prompt" not in data and data["prefix_len"] == 8 and data["learning_rate"] == 0.05
    assert TrainConfig.from_dict(data) == cfg
    assert cfg.updated(prefix_len=32).prompt.prefix_len == 32


def test_unknown_settings_are_errors():
    with pytest.raises(TypeError, match="prefix_lenght"):
        TrainConfig.build(prefix_lenght=4)


def test_a_bad_prompt_combination_is_a_one_line_user_error():
    with pytest.raises(UserError, match="vocab"):
        train_command.config_from_args(_parse("--prefix-init", "vocab", "--prefix-projection"))


def test_max_train_samples_auto_none_and_numbers():
    assert TrainConfig.build(task="rte").max_train_samples is None  # auto: all, except the main job
    assert TrainConfig.build(max_train_samples=None).max_train_samples is None
    assert train_command.config_from_args(_parse("--max-train-samples", "100")).max_train_samples == 100
    assert train_command.config_from_args(_parse("--max-train-samples", "all")).max_train_samples is None
    assert train_command.config_from_args(_parse("--method", "handcrafted")).max_train_samples == 0


def test_output_dir_is_named_after_the_run():
    assert TrainConfig.build(task="conll03,conll04", method="fine-tune").output_dir == (
        "outputs/conll03+conll04-fine-tune"
    )


def test_config_files_take_the_generated_options_types(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"max_train_samples": None, "lr": 0.05, "prefix_len": 8, "init_std": 1}))
    cfg = train_command.config_from_args(
        train_command.with_config_file(_parse("--config", str(path), "--task", "rte"))
    )
    assert (cfg.max_train_samples, cfg.learning_rate, cfg.prompt.prefix_len, cfg.prompt.init_std) == (
        None,
        0.05,
        8,
        1.0,
    )
    path.write_text(json.dumps({"max_train_samples": "auto"}))
    assert train_command.config_from_args(
        train_command.with_config_file(_parse("--config", str(path)))
    ).max_train_samples == (MAIN_JOB_TRAIN_SAMPLES)


def test_own_data_is_named_without_a_train_suffix():
    from ptuning.commands.evaluate import result_name
    from ptuning.training.config import task_name_of_file

    cfg = TrainConfig.build(train_file="data/tickets_train.csv", validation_file="data/tickets_dev.csv")
    assert cfg.task == "tickets" and cfg.output_dir == "outputs/tickets-p-tuning-v2"
    assert (
        result_name(cfg.task, "validation", "data/tickets_dev.json") == "eval_tickets_file_tickets_dev.json"
    )
    for path, name in (
        ("tickets-train.jsonl", "tickets"),
        ("tickets.train.tsv", "tickets"),
        ("Tickets_TRAIN.csv", "Tickets"),
        ("train.csv", "train"),  # nothing would be left
        ("trainset.csv", "trainset"),
        ("reviews.csv", "reviews"),
    ):
        assert task_name_of_file(path) == name, path
    several = TrainConfig.build(train_file="a_train.csv,b-train.csv", validation_file="a.csv,b.csv")
    assert several.task == "a,b" and several.output_dir == "outputs/a+b-p-tuning-v2"
    assert TrainConfig.build(task="mine", train_file="x_train.csv").task == "mine"  # --task wins


def test_the_new_options_default_as_the_library():
    cfg = train_command.config_from_args(_parse())
    assert (cfg.epochs, cfg.patience, cfg.min_delta, cfg.max_epochs, cfg.report_to) == (
        TrainConfig().epochs,
        TrainConfig().patience,
        TrainConfig().min_delta,
        TrainConfig().max_epochs,
        "tensorboard",
    )
    assert train_command.config_from_args(_parse("--report-to", "none")).report_to == "none"
    with pytest.raises(SystemExit):
        _parse("--report-to", "comet")


def test_preflight_names_mirror_the_modules_that_import_torch():
    from ptuning.checkpoint import CONFIG_NAME
    from ptuning.commands import preflight
    from ptuning.data.readers import _TABLE_DELIMITERS
    from ptuning.data.tables import TABLE_FILE_BUILDERS
    from ptuning.training.transfer import MULTITASK_FILE

    assert preflight.CHECKPOINT_CONFIG == CONFIG_NAME and preflight.MULTITASK_FILE == MULTITASK_FILE
    assert preflight.TABLE_DELIMITERS == _TABLE_DELIMITERS
    assert tuple(TABLE_FILE_BUILDERS) == preflight.TABLE_SUFFIXES
