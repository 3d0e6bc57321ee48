"""The serving engine: mixed-task batches equal each task alone; registry; micro-batcher."""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest
import torch

from ptuning.core.config import PromptConfig
from ptuning.errors import CheckpointError, DataError
from ptuning.inference import Predictor
from ptuning.model import PromptModel
from ptuning.serving import (
    InvalidTaskNameError,
    MicroBatcher,
    MultiTaskPredictor,
    QueueFullError,
    ShuttingDownError,
    TaskExistsError,
    UnknownTaskError,
)
from ptuning.tasks import TaskSpec

INPUTS = {
    "sentiment": [
        "a gripping , funny film",
        {"text": "dull", "text_pair": "and very long"},
        "the plot was long " * 60,  # longer than the tiny backbone's 128 positions: truncated
    ],
    "topic": ["John went to Paris", {"text": "music and sports news from London today"}],
    "similarity": [{"text": "a man plays", "text_pair": "a person is playing"}, "one text only"],
    "copa": [
        {"context": "The man fell .", "choices": ["he got up", "he flew away to the moon"]},
        {"context": "It rained .", "choices": ["wet", "dry"]},
    ],
    "ner": ["John lives in Paris", {"tokens": ["Mary", "Smith", "visited", "London"]}],
    "squad": [
        {"question": "where did John go ?", "context": "John went home to Paris . " * 45},  # several windows
        {"question": "who ?", "context": "Mary sings ."},
    ],
    "intent": ["tell me more", "what is this"],
}


@pytest.fixture(scope="module")
def predictor(demo_checkpoints):
    return MultiTaskPredictor.from_checkpoints(demo_checkpoints, max_batch_size=8)


def _reference(predictor, name):
    """Predictor (what `ptuning predict` runs) on the same model, one task alone."""
    task = predictor.task(name)
    return Predictor(task.model, predictor.tokenizer, max_length=predictor.max_length, batch_size=4)


def _max_diff(a, b) -> float:
    if isinstance(a, tuple):
        return max(_max_diff(x, y) for x, y in zip(a, b, strict=True))
    assert len(a) == len(b)
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim:  # padded rows of the reference batch: compare the real positions
            n = min(x.shape[0], y.shape[0])
            x, y = x[:n], y[:n]
        worst = max(worst, float(np.abs(x - y).max()))
    return worst


def _answers_close(got, want, tol=2e-6):
    if isinstance(got, dict):
        assert got.keys() == want.keys()
        for key in got:
            _answers_close(got[key], want[key], tol)
    elif isinstance(got, list):
        assert len(got) == len(want)
        for x, y in zip(got, want, strict=True):
            _answers_close(x, y, tol)
    elif isinstance(got, float):
        assert abs(got - want) <= tol
    else:
        assert got == want


def test_mixed_task_batches_equal_each_task_alone(predictor):
    names = list(INPUTS)
    # interleave: several requests per task so every forward pass mixes tasks and prefix lengths
    requests = [
        predictor.prepare(name, [item])
        for i in range(3)
        for name in names
        for item in INPUTS[name][i : i + 1]
    ]
    mixed = predictor.compute(requests, max_batch_size=8)
    worst = 0.0
    for request, logits in zip(requests, mixed, strict=True):
        alone = _reference(predictor, request.task.name).logits(request.features)
        worst = max(worst, _max_diff(logits, alone))
    print(f"\nmixed-task vs single-task logits: max abs diff {worst:.2e}")
    assert worst <= 1e-5
    # and the formatted answers are those of Predictor.predict
    outputs = predictor.predict_many(list(INPUTS.items()))
    for name, got in zip(names, outputs, strict=True):
        _answers_close(got, _reference(predictor, name).predict(INPUTS[name]))
    flags = [o["truncated"] for o in outputs[0]]
    assert flags == [False, False, True]
    assert outputs[names.index("squad")][0]["answer"]  # a span of the long context was found


def test_every_row_gets_its_own_prefix(predictor):
    tasks = [predictor.task(n) for n in ("sentiment", "topic", "sentiment", "copa")]
    prefix = predictor.gather_prefix(tasks)
    # topic prompts only the top 2 of 3 layers with P=8; sentiment P=4 all layers; copa P=5
    assert sorted(prefix) == [0, 1, 2]
    bottom, top = prefix[0], prefix[2]
    assert bottom.key.shape == (4, 4, 8, 8)
    assert bottom.mask.tolist()[1] == [False] * 8  # the topic row: fully masked (plain backbone)
    assert bottom.mask.tolist()[0] == [True] * 4 + [False] * 4
    assert top.mask.tolist()[1] == [True] * 8 and top.mask.tolist()[3] == [True] * 5 + [False] * 3
    assert torch.equal(top.key[0, :, :4], predictor.task("sentiment").keys[2])
    assert torch.equal(top.value[1], predictor.task("topic").values[2])
    alone = predictor.gather_prefix([tasks[1]] * 2)
    assert sorted(alone) == [1, 2] and alone[1].mask is None  # one task: exactly PromptModel's prefix


def test_prefix_table_is_the_checkpoint_prefix(predictor):
    task = predictor.task("similarity")  # prefix-tuning: saved folded, loaded without MLP
    assert not task.model.prefix_encoder.projection
    expected = task.model.prefix_encoder(1)
    for layer in task.layers:
        assert torch.equal(task.keys[layer], expected[layer].key[0])


def test_start_refuses_checkpoints_of_another_backbone(demo_checkpoints, tmp_path, tiny_bert_dir):
    other = tmp_path / "other"
    shutil.copytree(demo_checkpoints["sentiment"], other)
    config = json.loads((other / "ptuning_config.json").read_text())
    config.update(backbone="some-other-model", backbone_fingerprint="0123456789abcdef")
    (other / "ptuning_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        MultiTaskPredictor.from_checkpoints({"a": demo_checkpoints["topic"], "b": other})
    message = str(info.value)
    assert str(demo_checkpoints["topic"]) in message and str(other) in message
    assert "some-other-model" in message and str(tiny_bert_dir) in message and "task 'b'" in message


def test_fine_tune_and_missing_checkpoints_are_refused(tmp_path, tiny_bert_dir, predictor):
    from ptuning.core.backbones import load_backbone

    backbone, _ = load_backbone(str(tiny_bert_dir))
    spec = TaskSpec("ft", "classification", labels=("a", "b"))
    PromptModel(
        backbone, spec, PromptConfig(method="fine-tune"), backbone_name=str(tiny_bert_dir)
    ).save_pretrained(tmp_path / "ft")
    with pytest.raises(CheckpointError, match="fine-tune checkpoint.*own backbone"):
        MultiTaskPredictor.from_checkpoints({"ft": tmp_path / "ft"})
    with pytest.raises(CheckpointError, match="fine-tune"):
        predictor.add_task("ft", tmp_path / "ft")
    with pytest.raises(CheckpointError, match="does not exist"):
        predictor.add_task("nothing", tmp_path / "nothing")
    assert "ft" not in predictor.task_names


def test_add_and_remove_tasks(predictor, demo_checkpoints, tmp_path):
    before = predictor.task_names
    added = predictor.add_task("sentiment-2", demo_checkpoints["sentiment"])
    assert added.info()["prompt_length"] == 4 and "sentiment-2" in predictor.task_names
    assert predictor.predict("sentiment-2", ["fine"]) == predictor.predict("sentiment", ["fine"])
    with pytest.raises(TaskExistsError):
        predictor.add_task("sentiment-2", demo_checkpoints["sentiment"])
    with pytest.raises(InvalidTaskNameError):
        predictor.add_task("bad/name", demo_checkpoints["sentiment"])
    # a checkpoint of another backbone (a real one: a tiny BERT with other weights)
    from ptuning.testing import tiny_backbone

    other = PromptModel(
        tiny_backbone("bert", vocab_size=predictor.tokenizer.vocab_size, seed=3),
        TaskSpec("x", "classification", labels=("a", "b")),
        PromptConfig(prefix_len=2),
        backbone_name="tiny-bert-seed-3",
    )
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError, match="tiny-bert-seed-3.*this server's backbone"):
        predictor.add_task("other", tmp_path / "other")
    removed = predictor.remove_task("sentiment-2")
    assert removed.name == "sentiment-2" and predictor.task_names == before
    with pytest.raises(UnknownTaskError) as info:
        predictor.remove_task("sentiment-2")
    assert "known tasks: copa, intent" in str(info.value) and info.value.known == before


def test_bad_inputs_name_the_field(predictor):
    with pytest.raises(DataError, match=r"input 1: field 'text'"):
        predictor.prepare("sentiment", ["ok", {"text": 3}])
    with pytest.raises(DataError, match="expects 2 choices"):
        predictor.prepare("copa", [{"context": "c", "choices": ["a", "b", "c"]}])
    with pytest.raises(UnknownTaskError, match="known tasks: copa"):
        predictor.prepare("nope", ["x"])


def test_micro_batcher_mixes_tasks_and_matches_alone(predictor):
    names = list(INPUTS)
    with MicroBatcher(predictor, max_batch_size=64, max_wait_ms=200) as batcher:
        results: dict[str, list] = {}

        def call(name):
            results[name] = batcher.predict(name, INPUTS[name])

        threads = [threading.Thread(target=call, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert batcher.stats["mixed_batches"] >= 1 and batcher.stats["errors"] == 0
        assert batcher.stats["batches"] < len(names)
    for name in names:
        _answers_close(results[name], _reference(predictor, name).predict(INPUTS[name]))


def test_queue_is_bounded_and_close_answers_what_it_accepted(predictor):
    batcher = MicroBatcher(predictor, max_batch_size=64, max_wait_ms=400, max_queue=4).start()
    first = batcher.submit(predictor.prepare("sentiment", ["a", "b"]))
    # a task removed while its request waits in the queue: the request is still answered
    predictor.add_task("temporary", predictor.task("topic").path)
    third = batcher.submit(predictor.prepare("temporary", ["y"]))
    predictor.remove_task("temporary")
    assert batcher.pending == 3
    with pytest.raises(QueueFullError, match="queue is full"):
        batcher.submit(predictor.prepare("topic", ["x", "z"]))
    second = batcher.submit(predictor.prepare("ner", ["John"]))
    started = time.monotonic()
    batcher.close()  # no waiting for the 400 ms: drain now
    assert time.monotonic() - started < 5
    assert all(f.done() and f.exception() is None for f in (first, second, third))
    assert len(first.result()) == 2 and len(third.result()) == 1
    alone = predictor.compute([predictor.prepare("topic", ["y"])])[0]  # the removed task's answer
    assert np.abs(third.result()[0] - alone[0]).max() <= 1e-5
    with pytest.raises(ShuttingDownError):
        batcher.submit(predictor.prepare("ner", ["Mary"]))
    assert batcher.pending == 0 and "temporary" not in predictor.task_names


def test_queue_room_is_given_back_before_the_answer(predictor):
    # a caller that sends again as soon as it has its answer must find its inputs no longer counted
    with MicroBatcher(predictor, max_wait_ms=0, max_queue=2) as batcher:
        seen: list[int] = []
        future = batcher.submit(predictor.prepare("sentiment", ["a", "b"]))
        future.add_done_callback(lambda _: seen.append(batcher.pending))  # runs as the answer is set
        future.result(30)
        assert seen == [0]
        assert len(batcher.submit(predictor.prepare("sentiment", ["c", "d"])).result(30)) == 2


def test_worker_survives_a_failing_batch(predictor, monkeypatch):
    calls = {"n": 0}
    original = predictor.compute_parts  # what the batcher's worker runs

    def flaky(requests, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return original(requests, **kwargs)

    monkeypatch.setattr(predictor, "compute_parts", flaky)
    with MicroBatcher(predictor, max_wait_ms=0) as batcher:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.predict("sentiment", ["x"], timeout=10)
        assert batcher.predict("sentiment", ["x"], timeout=10)[0]["label"] in ("negative", "positive")
        assert batcher.stats["errors"] == 1 and batcher.pending == 0
