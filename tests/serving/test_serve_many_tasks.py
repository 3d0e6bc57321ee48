"""One input, many tasks: `MultiTaskPredictor.predict_tasks` and `POST /v1/predict` with "tasks"
answer every task for the same inputs in one batched pass, equal to each task alone."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from ptuning.errors import DataError
from ptuning.serving import MicroBatcher, MultiTaskPredictor, UnknownTaskError
from ptuning.serving.app import create_app
from ptuning.serving.settings import ServeSettings
from tests.serving.helpers import ServerThread
from tests.serving.test_serving import _answers_close, _max_diff, _reference

INPUTS = ["John went to Paris", "a gripping , funny film from London today"]
# deep prompts of four task types and prefix lengths, one prompting only its top 2 layers; a plain
# string suits each of them
TASKS = ["sentiment", "ner", "topic", "similarity"]


@pytest.fixture(scope="module")
def predictor(demo_checkpoints):
    return MultiTaskPredictor.from_checkpoints(demo_checkpoints, max_batch_size=8)


def test_predict_tasks_equals_each_task_alone_in_one_pass(predictor, monkeypatch):
    passes = []
    forward = predictor._forward
    monkeypatch.setattr(
        predictor, "_forward", lambda rows, out: (passes.append(len(rows)), forward(rows, out))
    )
    inputs = ["John went to Paris", "a gripping , funny film from London"]
    answers = predictor.predict_tasks(TASKS, inputs)
    assert list(answers) == TASKS
    assert passes == [len(TASKS) * len(inputs)]  # 8 rows: one forward pass, every row its task's prefix
    for name in TASKS:
        _answers_close(answers[name], _reference(predictor, name).predict(inputs), tol=1e-5)
    # the logits themselves, against each task run alone through `ptuning predict`'s Predictor
    prepared = [predictor.prepare(name, inputs) for name in TASKS]
    for request, logits in zip(prepared, predictor.compute(prepared), strict=True):
        assert _max_diff(logits, _reference(predictor, request.task.name).logits(request.features)) <= 1e-5
    # an input prompt (prompt-tuning) changes the sequence: its rows take a pass of their own
    passes.clear()
    answers = predictor.predict_tasks(["sentiment", "intent"], inputs)
    assert passes == [2, 2]
    _answers_close(answers["intent"], _reference(predictor, "intent").predict(inputs), tol=1e-5)


def test_predict_tasks_refuses_unknown_duplicate_and_unfit_inputs(predictor):
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'; known tasks: copa"):
        predictor.predict_tasks(["sentiment", "nope"], ["x"])
    with pytest.raises(ValueError, match="'ner' is listed twice"):
        predictor.predict_tasks(["ner", "sentiment", "ner"], ["x"])
    with pytest.raises(ValueError, match="non-empty list"):
        predictor.predict_tasks([], ["x"])
    with pytest.raises(DataError, match="needs an object"):  # a string is no multiple-choice input
        predictor.predict_tasks(["sentiment", "copa"], ["x"])


def test_submit_many_is_one_batch(predictor):
    with MicroBatcher(predictor, max_batch_size=16, max_wait_ms=0) as batcher:
        prepared = [predictor.prepare(name, INPUTS) for name in TASKS]
        futures = batcher.submit_many(prepared)
        outputs = [f.result(30) for f in futures]
        assert batcher.stats["batches"] == 1 and batcher.stats["mixed_batches"] == 1
    for request, output in zip(prepared, outputs, strict=True):
        assert _max_diff(output, _reference(predictor, request.task.name).logits(request.features)) <= 1e-5


@pytest.fixture(scope="module")
def client(predictor):
    settings = ServeSettings(max_batch_size=16, max_wait_ms=20, max_inputs=8, max_queue=12)
    with (
        ServerThread(create_app(predictor, settings)) as running,
        httpx.Client(base_url=running.url, timeout=30) as c,
    ):
        yield c


def test_http_tasks_answer_every_task_like_each_alone(client, predictor):
    before = client.get("/health").json()["batches"]
    response = client.post("/v1/predict", json={"tasks": TASKS, "inputs": INPUTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tasks"] == TASKS and "task" not in body and list(body["outputs"]) == TASKS
    for name in TASKS:
        alone = client.post("/v1/predict", json={"task": name, "inputs": INPUTS}).json()
        assert "tasks" not in alone  # the one-task answer keeps its shape
        _answers_close(body["outputs"][name], alone["outputs"], tol=1e-5)
        _answers_close(body["outputs"][name], _reference(predictor, name).predict(INPUTS), tol=1e-5)
    assert client.get("/health").json()["batches"] == before + 1 + len(TASKS)  # the many-task request: one
    probabilities = body["outputs"]["sentiment"][0]["probabilities"]
    assert np.isclose(sum(probabilities.values()), 1.0, atol=1e-5)


BAD = [
    ("unknown task", {"tasks": ["sentiment", "nope"], "inputs": ["x"]}, 404, "known tasks: copa"),
    ("task and tasks", {"task": "ner", "tasks": ["ner"], "inputs": ["x"]}, 422, '"tasks"'),
    ("neither", {"inputs": ["x"]}, 422, "give either 'task'"),
    ("empty tasks", {"tasks": [], "inputs": ["x"]}, 422, '"tasks"'),
    ("tasks not a list", {"tasks": "ner", "inputs": ["x"]}, 422, '"tasks"'),
    ("listed twice", {"tasks": ["ner", "ner"], "inputs": ["x"]}, 422, "'ner' is listed twice"),
    ("input unfit for one task", {"tasks": ["sentiment", "copa"], "inputs": ["x"]}, 422, "needs an object"),
    ("more rows than the queue", {"tasks": TASKS, "inputs": ["x"] * 4}, 413, "4 inputs x 4 tasks"),
]


@pytest.mark.parametrize("what,body,status,needle", BAD, ids=[b[0] for b in BAD])
def test_http_tasks_errors(client, what, body, status, needle):
    response = client.post("/v1/predict", json=body)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_take_rows_gathers_rows_in_order_on_every_device():
    """A mixed batch's prefix rows: a stack of views on the CPU, one index_select elsewhere."""
    import torch

    from ptuning.serving.predictor import take_rows

    table = torch.arange(5 * 3 * 2, dtype=torch.float32).view(5, 3, 2)
    index = [3, 0, 3, 1]
    expected = table[torch.tensor(index)]
    assert torch.equal(take_rows(table, index), expected)
    assert take_rows(table.to("meta"), index).shape == expected.shape  # the index_select path
    if torch.cuda.is_available():
        assert torch.equal(take_rows(table.cuda(), index).cpu(), expected)
