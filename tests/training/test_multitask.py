"""Multi-task deep prompts: task sampling, parity with single-task training, sub-checkpoints, --init-from."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from ptuning.cli import main
from ptuning.errors import CheckpointError
from ptuning.model import PromptModel
from ptuning.training.config import TrainConfig
from ptuning.training.multitask import train_multitask
from ptuning.training.run import train
from ptuning.training.sampling import GlobalLengthGroupedSampler, TaskBatchSampler, batch_counts, task_shares
from ptuning.training.transfer import init_prompt_from
from tests.helpers import FIXTURES


def _features(n: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 30, (n,), generator=generator).tolist()
    return [{"input_ids": [1] * length} for length in lengths]


def test_shares_and_counts():
    assert task_shares([300, 100], "proportional") == pytest.approx([0.75, 0.25])
    # T = 2: sqrt(400) : sqrt(100) = 2 : 1
    assert task_shares([400, 100], "temperature", 2.0) == pytest.approx([2 / 3, 1 / 3])
    assert batch_counts([400, 100], 10, "proportional") == [40, 10]
    assert batch_counts([400, 100], 10, "temperature", 2.0) == [33, 17]  # 50 batches split 2:1
    assert sum(batch_counts([997, 13, 40], 8, "temperature", 3.0)) == 125 + 2 + 5
    with pytest.raises(ValueError, match="unknown task sampling rule"):
        task_shares([1], "uniform")


@pytest.mark.parametrize("rule", ["proportional", "temperature"])
def test_batches_are_single_task_and_follow_the_rule(rule):
    datasets = [_features(50, 0), _features(13, 1), _features(29, 2)]
    sampler = TaskBatchSampler(datasets, 4, 8, seed=3, rule=rule, temperature=2.0)
    offsets = [0, 50, 63, 92]
    seen = [0, 0, 0]
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13 + 4 + 8
    for batch in batches:
        tasks = {next(t for t in range(3) if offsets[t] <= i < offsets[t + 1]) for i in batch}
        assert len(tasks) == 1
        seen[tasks.pop()] += 1
    assert seen == sampler.counts
    if rule == "proportional":  # every example exactly once per epoch
        assert sorted(i for batch in batches for i in batch) == list(range(92))
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a fresh order each epoch


def test_one_task_yields_the_single_task_order():
    data = _features(37, 5)
    sampler = TaskBatchSampler([data], 4, 8, seed=11)
    single = GlobalLengthGroupedSampler(8, data, 11)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        single.set_epoch(epoch)
        order = list(single)
        assert list(sampler) == [order[i : i + 4] for i in range(0, 37, 4)]


def _config(tiny_bert_dir, tmp_path, task: str, name: str, **extra) -> TrainConfig:
    return TrainConfig.build(
        task=task,
        backbone=str(tiny_bert_dir),
        prefix_len=4,
        max_seq_length=32,
        batch_size=8,
        epochs=2,
        max_train_samples=24,
        max_eval_samples=16,
        logging_steps=100,
        output_dir=str(tmp_path / name),
        progress=False,
        **extra,
    )


def test_one_task_multitask_equals_single_task_training(tiny_bert_dir, tmp_path, shared_data):
    cfg = _config(tiny_bert_dir, tmp_path, "conll03", "single")
    single = train(cfg)
    multi = train_multitask(replace(cfg, output_dir=str(tmp_path / "multi")))
    assert multi["tasks"] == ["conll03"]
    assert multi["per_task"]["conll03"]["validation"]["f1"] == pytest.approx(
        single["validation"]["f1"], abs=1e-9
    )
    assert multi["per_task"]["conll03"]["validation"]["loss"] == pytest.approx(
        single["validation"]["loss"], rel=1e-6
    )
    assert multi["global_steps"] == single["global_steps"] == 6
    a = load_file(str(tmp_path / "single" / "prompt.safetensors"))
    b = load_file(str(tmp_path / "multi" / "conll03" / "prompt.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)


def test_two_tasks_share_the_prompt_and_save_every_head(tiny_bert_dir, tmp_path, shared_data, capsys):
    out = tmp_path / "mt"
    args = [
        "train", "--task", "conll03,sst2", "--backbone", str(tiny_bert_dir), "--output-dir", str(out),
        "--max-train-samples", "24", "--max-eval-samples", "16", "--epochs", "1", "--batch-size", "8",
        "--max-seq-length", "32", "--prefix-len", "4", "--quiet", "--task-sampling", "temperature",
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"] == ["conll03", "sst2"] and set(metrics["per_task"]) == {"conll03", "sst2"}
    assert json.loads((out / "multitask.json").read_text()) == {"tasks": ["conll03", "sst2"]}
    assert json.loads((out / "sst2" / "train_config.json").read_text())["max_seq_length"] == 32
    ner = load_file(str(out / "conll03" / "prompt.safetensors"))
    sst = load_file(str(out / "sst2" / "prompt.safetensors"))
    torch.testing.assert_close(ner["prefix_encoder.embedding.weight"], sst["prefix_encoder.embedding.weight"])
    assert ner["head.classifier.weight"].shape[0] == 9 and sst["head.classifier.weight"].shape[0] == 2
    task_metrics = [
        metrics["per_task"]["conll03"]["validation"]["f1"],
        metrics["per_task"]["sst2"]["validation"]["accuracy"],
    ]
    assert metrics["average"] == pytest.approx(sum(task_metrics) / 2)
    # every sub-checkpoint is an ordinary checkpoint: eval reproduces the recorded metric
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "sst2"), "--max-eval-samples", "16"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(metrics["per_task"]["sst2"]["validation"]["accuracy"])

    # both tasks served from one backbone, unchanged, as ordinary checkpoints
    from ptuning.inference import Predictor
    from ptuning.serving import MultiTaskPredictor

    served = MultiTaskPredictor.from_checkpoints({"ner": out / "conll03", "sentiment": out / "sst2"})
    ner, sentiment = served.predict_many(
        [("ner", ["EU rejects German call"]), ("sentiment", ["a fine film"])]
    )
    assert (
        ner[0]["tags"]
        == Predictor.from_checkpoint(out / "conll03").predict(["EU rejects German call"])[0]["tags"]
    )
    assert sentiment[0]["label"] in ("negative", "positive")

    # --init-from the multi-task folder: prompt loaded (the sst2 sub-checkpoint's), head fresh
    model = PromptModel.from_pretrained(out / "sst2")
    fresh = PromptModel(model.backbone, model.spec, model.prompt_config, backbone_name=str(tiny_bert_dir))
    head = fresh.head.classifier.weight.detach().clone()
    assert init_prompt_from(fresh, out) == out / "sst2"
    torch.testing.assert_close(fresh.prefix_encoder.embedding.weight, sst["prefix_encoder.embedding.weight"])
    torch.testing.assert_close(fresh.head.classifier.weight, head)
    longer = PromptModel(model.backbone, model.spec, replace(model.prompt_config, prefix_len=5))
    with pytest.raises(CheckpointError, match="prefix_len 4"):
        init_prompt_from(longer, out)

    single = tmp_path / "after"
    args = [
        "train", "--task", "sst2", "--backbone", str(tiny_bert_dir), "--output-dir", str(single),
        "--max-train-samples", "16", "--max-eval-samples", "16", "--max-steps", "2", "--batch-size", "8",
        "--max-seq-length", "32", "--prefix-len", "4", "--quiet", "--init-from", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    assert "prompt initialised from" in capsys.readouterr().out
    assert main([*args[:-1], str(tmp_path / "nothing-here")]) == 2
    assert "not a ptuning checkpoint" in capsys.readouterr().err


def test_several_user_files(tiny_bert_dir, tmp_path, capsys):
    files = {}
    for name, labels in (("reviews", ("bad", "good")), ("topics", ("art", "sport", "war"))):
        for split in ("train", "dev"):
            rows = [f"text {i} {labels[i % len(labels)]},{labels[i % len(labels)]}" for i in range(12)]
            path = tmp_path / f"{name}-{split}.csv"
            path.write_text("text,label\n" + "\n".join(rows) + "\n")
            files[name, split] = str(path)
    out = tmp_path / "user"
    args = [
        "train", "--train-file", f"{files['reviews', 'train']},{files['topics', 'train']}",
        "--validation-file", f"{files['reviews', 'dev']},{files['topics', 'dev']}", "--task", "reviews,topics",
        "--backbone", str(tiny_bert_dir), "--output-dir", str(out), "--max-steps", "2", "--batch-size", "4",
        "--max-seq-length", "32", "--prefix-len", "4", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"] == ["reviews", "topics"]
    topics = PromptModel.from_pretrained(out / "topics")
    assert topics.spec.labels == ("art", "sport", "war")
    assert main([*args[:6], "reviews", *args[7:]]) == 2
    assert "name the 2 tasks with --task a,b" in capsys.readouterr().err


def test_question_answering_beside_classification(tiny_bert_dir, tmp_path):
    """Label names switch per task (start/end positions for QA); squad2 keeps its tuned null threshold."""
    data = FIXTURES
    out = tmp_path / "qa"
    args = [
        "train", "--task", "squad2,wic", "--data-dir", str(data), "--backbone", str(tiny_bert_dir),
        "--output-dir", str(out), "--epochs", "1", "--batch-size", "4", "--max-seq-length", "64",
        "--prefix-len", "4", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    squad = metrics["per_task"]["squad2"]["validation"]
    assert {"f1", "has_ans_f1", "no_ans_f1", "loss"} <= set(squad)
    assert "loss" in metrics["per_task"]["wic"]["validation"]
    saved = json.loads((out / "squad2" / "ptuning_config.json").read_text())["task"]
    assert saved["null_threshold"] == squad["null_threshold"]
