"""What a run leaves unset, the kind of task decides (ptuning.training.defaults); the main job keeps
its own short schedule; your own data without validation data gets a held-out share."""

from __future__ import annotations

import json

import pytest

from ptuning.core.config import STANDALONE_PREFIX_LEN, PromptConfig
from ptuning.data.load import load_data
from ptuning.training.config import (
    AUTO,
    MAIN_JOB_EPOCHS,
    MAIN_JOB_MAX_SEQ_LENGTH,
    MAIN_JOB_TRAIN_SAMPLES,
    TrainConfig,
)
from ptuning.training.defaults import DEFAULTS, TASK_KINDS, for_task, learning_rate, task_kind


@pytest.mark.parametrize(
    ("task_type", "examples", "kind"),
    [
        ("classification", [{"text": "a", "label": "x"}], "sentence"),
        ("classification", [{"text": "a", "text_pair": None, "label": "x"}], "sentence"),
        ("classification", [{"text": "a", "text_pair": "b", "label": "x"}], "pair"),
        ("regression", [{"text": "a", "text_pair": "b", "label": 1.0}], "pair"),
        ("multiple_choice", [], "pair"),
        ("token_classification", [{"tokens": ["a"], "tags": ["O"]}], "tokens"),
        ("question_answering", [], "span"),
    ],
)
def test_the_kind_of_a_task(task_type, examples, kind):
    assert task_kind(task_type, examples) == kind


def test_every_kind_has_its_defaults():
    assert set(DEFAULTS) == set(TASK_KINDS)
    for defaults in DEFAULTS.values():
        assert defaults.prefix_len > 0 and defaults.max_epochs > 0 and defaults.max_seq_length > 0


def test_unset_settings_take_the_kind_s_and_given_ones_stay():
    cfg = TrainConfig.build(task="rte")
    assert cfg.prompt.prefix_len is None and cfg.learning_rate is None and cfg.epochs == AUTO
    pair = for_task(cfg, "pair")
    assert pair.prompt.prefix_len == DEFAULTS["pair"].prefix_len
    assert pair.learning_rate == DEFAULTS["pair"].learning_rates["p-tuning-v2"]
    assert pair.max_epochs == DEFAULTS["pair"].max_epochs
    assert pair.max_seq_length == DEFAULTS["pair"].max_seq_length
    given = for_task(
        TrainConfig.build(task="rte", prefix_len=8, lr=1e-3, max_epochs=5, max_seq_length=32), "pair"
    )
    assert (given.prompt.prefix_len, given.learning_rate, given.max_epochs, given.max_seq_length) == (
        8,
        1e-3,
        5,
        32,
    )
    assert for_task(pair, "tokens") == pair  # filled in once: a second kind changes nothing


def test_learning_rates_by_kind_and_method():
    assert learning_rate("tokens", "fine-tune") != learning_rate("pair", "fine-tune")
    # a method the table does not name keeps its own rate; a reparameterized prefix its MLP's
    assert learning_rate("sentence", "prefix-tuning") == TrainConfig.build(method="prefix-tuning").lr
    assert learning_rate("sentence", "p-tuning-v2", prefix_projection=True) == learning_rate(
        "sentence", "prefix-tuning"
    )


def test_the_main_job_keeps_its_short_schedule():
    main = TrainConfig()
    assert (main.max_train_samples, main.epochs, main.max_seq_length) == (
        MAIN_JOB_TRAIN_SAMPLES,
        MAIN_JOB_EPOCHS,
        MAIN_JOB_MAX_SEQ_LENGTH,
    )
    # the same task with a size of your own, or your own data, trains until it stops improving
    assert TrainConfig.build(task="sst2", max_train_samples=100).epochs == AUTO
    assert TrainConfig.build(train_file="x.csv").epochs == AUTO
    assert TrainConfig.build(task="sst2", max_train_samples=100).max_seq_length is None
    assert TrainConfig.build(epochs=2).epochs == 2  # a count given is kept
    assert TrainConfig.build(method="handcrafted").epochs == MAIN_JOB_EPOCHS  # nothing to stop early
    # per-example prompt dropout: off in the main job (its time), on for a plain deep prefix elsewhere
    assert main.prompt.prompt_dropout_per_example is False
    assert for_task(TrainConfig.build(task="rte"), "pair").prompt.prompt_dropout_per_example is True
    assert (
        for_task(
            TrainConfig.build(task="rte", method="prefix-tuning"), "pair"
        ).prompt.prompt_dropout_per_example
        is False
    )
    assert (
        for_task(
            TrainConfig.build(task="rte", prompt_dropout_per_example=False), "pair"
        ).prompt.prompt_dropout_per_example
        is False
    )


def test_a_prompt_config_alone_builds_with_the_standalone_length(tiny_bert_dir):
    from ptuning.model import PromptModel
    from ptuning.tasks import TaskSpec

    assert PromptConfig().prefix_len is None
    spec = TaskSpec("t", "classification", ("a", "b"))
    model, _ = PromptModel.from_backbone(str(tiny_bert_dir), spec, PromptConfig())
    assert model.prompt_config.prefix_len == STANDALONE_PREFIX_LEN
    assert model.prefix_encoder.embedding.weight.shape[0] == STANDALONE_PREFIX_LEN


def _table(path, rows):
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    return path


def test_own_data_without_validation_holds_out_a_stratified_tenth(tmp_path):
    rows = [(f"text {i}", "a" if i % 4 else "b") for i in range(200)]
    cfg = TrainConfig.build(train_file=str(_table(tmp_path / "t.csv", rows)))
    data = load_data(cfg)
    assert (len(data.train), len(data.validation)) == (180, 20)
    assert sorted(ex["label"] for ex in data.validation).count("b") == 5  # stratified: 50 of 200 are b
    assert any("held out" in note for note in data.spec.notes)
    # a validation file given: nothing is held out
    dev = _table(tmp_path / "dev.csv", rows[:10])
    data = load_data(TrainConfig.build(train_file=str(tmp_path / "t.csv"), validation_file=str(dev)))
    assert (len(data.train), len(data.validation)) == (200, 10)


def test_a_run_records_the_filled_in_settings(tmp_path, tiny_bert_dir):
    import ptuning

    rows = [(f"good {i}" if i % 2 else f"bad {i}", "pos" if i % 2 else "neg") for i in range(40)]
    out = tmp_path / "run"
    cfg = TrainConfig.build(
        train_file=str(_table(tmp_path / "t.csv", rows)),
        backbone=str(tiny_bert_dir),
        epochs=1,
        output_dir=str(out),
        report_to="none",
        progress=False,
    )
    ptuning.train(cfg)
    recorded = json.loads((out / "train_config.json").read_text())
    sentence = DEFAULTS["sentence"]
    assert (recorded["prefix_len"], recorded["learning_rate"], recorded["max_seq_length"]) == (
        sentence.prefix_len,
        sentence.learning_rates["p-tuning-v2"],
        sentence.max_seq_length,
    )
    assert (
        json.loads((out / "ptuning_config.json").read_text())["prompt_config"]["prefix_len"]
        == sentence.prefix_len
    )
