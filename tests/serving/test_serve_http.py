"""`ptuning serve` over real HTTP on 127.0.0.1 (free ports): answers, errors, admin, shutdown, load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from ptuning.cli import main as cli_main
from ptuning.core.config import PromptConfig
from ptuning.experiments.bench import load_test
from ptuning.inference import Predictor
from ptuning.model import PromptModel
from ptuning.serving import MultiTaskPredictor
from ptuning.serving.app import create_app
from ptuning.serving.settings import ServeSettings
from ptuning.tasks import TaskSpec
from tests.serving.helpers import ServerThread
from tests.serving.test_serving import INPUTS, _answers_close

LIMITS = {"max_inputs": 8, "max_chars": 2000}
ADMIN_TOKEN = "test-admin-token"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def predictor(demo_checkpoints):
    return MultiTaskPredictor.from_checkpoints(demo_checkpoints, max_batch_size=16)


@pytest.fixture(scope="module")
def server(predictor):
    settings = ServeSettings(max_batch_size=16, max_wait_ms=20, admin_token=ADMIN_TOKEN, **LIMITS)
    with ServerThread(create_app(predictor, settings)) as running:
        yield running


@pytest.fixture()
def client(server):
    """A client that sends the admin token (admin routes need it)."""
    with httpx.Client(base_url=server.url, timeout=30, headers=AUTH) as c:
        yield c


def _reference(predictor, name, inputs):
    task = predictor.task(name)
    return Predictor(task.model, predictor.tokenizer, max_length=predictor.max_length).predict(inputs)


def test_health_tasks_and_docs(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["tasks"] == 7
    listing = client.get("/v1/tasks").json()
    tasks = {t["name"]: t for t in listing["tasks"]}
    assert tasks["topic"]["labels"] == ["world", "sports", "business"]
    assert tasks["topic"]["prompt_length"] == 8 and tasks["topic"]["prompted_layers"] == [1, 2]
    assert (
        tasks["squad"]["task_type"] == "question_answering" and tasks["intent"]["method"] == "prompt-tuning"
    )
    assert listing["max_length"] == 128  # the tiny backbone's position limit
    assert tasks["topic"]["checkpoint"]  # the admin token shows the checkpoint folders
    public = httpx.get(client.base_url.join("/v1/tasks")).json()["tasks"]  # no token: names and types
    assert {t["name"]: t for t in public}["topic"] == {"name": "topic", "task_type": "classification"}
    assert "checkpoint" not in json.dumps(public) and len(public) == len(listing["tasks"])
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):  # Swagger UI pulls a CDN's scripts: off
        assert client.get(page).status_code == 404, page
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/v1/tasks", "/v1/predict", "/v1/tasks/{name}"} <= set(paths)


def test_answers_equal_ptuning_predict(client, predictor, demo_checkpoints, capsys):
    for name, inputs in INPUTS.items():
        response = client.post("/v1/predict", json={"task": name, "inputs": inputs})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["task"] == name
        _answers_close(body["outputs"], _reference(predictor, name, inputs))
    # and literally the JSON lines of the `ptuning predict` command
    texts = ["a gripping , funny film", "the plot was long " * 60]
    assert (
        cli_main(
            ["predict", "--checkpoint", str(demo_checkpoints["sentiment"]), "--max-seq-length", "128", *texts]
        )
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    served = client.post("/v1/predict", json={"task": "sentiment", "inputs": texts}).json()["outputs"]
    _answers_close(served, lines)
    assert served[1]["truncated"] is True


def test_requests_of_different_tasks_share_batches(client, predictor):
    before = client.get("/health").json()["mixed_batches"]
    names = list(INPUTS) * 3
    results: dict[int, httpx.Response] = {}

    def post(i, name):
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            results[i] = own.post("/v1/predict", json={"task": name, "inputs": INPUTS[name]})

    threads = [threading.Thread(target=post, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, name in enumerate(names):
        assert results[i].status_code == 200
        _answers_close(results[i].json()["outputs"], _reference(predictor, name, INPUTS[name]))
    assert client.get("/health").json()["mixed_batches"] > before


BAD = [
    # (what, raw body or JSON, status, a string the answer must contain)
    ("unknown task", {"task": "nope", "inputs": ["x"]}, 404, "known tasks: copa, intent, ner"),
    ("malformed JSON", b'{"task": "ner", "inputs": [', 422, "json_invalid"),
    ("task not a string", {"task": 5, "inputs": ["x"]}, 422, '"task"'),
    ("inputs not a list", {"task": "ner", "inputs": "x"}, 422, '"inputs"'),
    ("missing task", {"inputs": ["x"]}, 422, '"task"'),
    ("unknown field", {"task": "ner", "inputs": ["x"], "extra": 1}, 422, '"extra"'),
    ("input of a wrong type", {"task": "ner", "inputs": [3]}, 422, '"inputs",0'),
    ("field of a wrong type", {"task": "sentiment", "inputs": ["ok", {"text": 3}]}, 422, '"inputs",1,"text"'),
    ("missing field", {"task": "squad", "inputs": [{"question": "q?"}]}, 422, '"context"'),
    ("string for a pair task", {"task": "copa", "inputs": ["x"]}, 422, "needs an object"),
    ("empty inputs", {"task": "ner", "inputs": []}, 422, '"inputs"'),
    ("too many inputs", {"task": "ner", "inputs": ["x"] * 9}, 413, "limit is 8"),
    ("too many characters", {"task": "sentiment", "inputs": ["ok", "a" * 2001]}, 413, "input 1 has 2001"),
    ("too many tokens words", {"task": "ner", "inputs": [{"tokens": ["ab"] * 1001}]}, 413, "limit is 2000"),
    ("body too large", b'{"task": "ner", "inputs": ["' + b"a" * 400_000 + b'"]}', 413, "larger than"),
]


@pytest.mark.parametrize("what,body,status,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_refused_with_the_right_code(client, what, body, status, needle):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/v1/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert needle in response.text


def test_body_too_large_without_content_length(client):
    def chunks():
        yield b'{"task": "ner", "inputs": ["'
        for _ in range(40):
            yield b"a" * 10_000
        yield b'"]}'

    response = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.get("/health").json()["status"] == "ok"


def test_add_and_remove_tasks_while_serving(
    client, server, predictor, demo_checkpoints, tmp_path, tiny_bert_dir
):
    stop = threading.Event()
    codes: list[int] = []
    wrong: list[str] = []
    want = _reference(predictor, "sentiment", ["steady traffic"])

    def traffic():
        with httpx.Client(base_url=server.url, timeout=30) as own:
            while not stop.is_set():
                r = own.post("/v1/predict", json={"task": "sentiment", "inputs": ["steady traffic"]})
                codes.append(r.status_code)
                try:
                    _answers_close(r.json()["outputs"], want)
                except (AssertionError, KeyError) as exc:  # an exception in a thread fails no test
                    wrong.append(repr(exc) or r.text)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        added = client.post("/v1/tasks/news", json={"path": str(demo_checkpoints["topic"])})
        assert added.status_code == 201 and added.json()["prompt_length"] == 8
        got = client.post("/v1/predict", json={"task": "news", "inputs": INPUTS["topic"]}).json()["outputs"]
        _answers_close(got, _reference(predictor, "topic", INPUTS["topic"]))
        assert client.post("/v1/tasks/news", json={"path": str(demo_checkpoints["topic"])}).status_code == 409
        # the body may also be the folder as a bare JSON string
        assert client.post("/v1/tasks/news", json=str(demo_checkpoints["topic"])).status_code == 409
        bare = client.post("/v1/tasks/news2", json=str(tmp_path / "nothing"))
        assert bare.status_code == 422 and bare.json()["detail"][0]["loc"] == ["body"]
        assert client.post("/v1/tasks/news2", json={"path": 3}).status_code == 422
        assert client.post("/v1/tasks/news2", json={"folder": "x"}).status_code == 422
        assert (
            client.post("/v1/tasks/bad%20name", json={"path": str(demo_checkpoints["topic"])}).status_code
            == 422
        )
        missing = client.post("/v1/tasks/gone", json={"path": str(tmp_path / "nothing")})
        assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "path"]
        # another backbone's checkpoint: refused, naming both backbones
        other = tmp_path / "other"
        shutil.copytree(demo_checkpoints["ner"], other)
        config = json.loads((other / "ptuning_config.json").read_text())
        config.update(backbone="bert-large-cased", backbone_fingerprint="fedcba9876543210")
        (other / "ptuning_config.json").write_text(json.dumps(config))
        refused = client.post("/v1/tasks/other", json={"path": str(other)})
        assert refused.status_code == 422
        assert "bert-large-cased" in refused.text and str(tiny_bert_dir) in refused.text
        # a fine-tune checkpoint: refused
        from ptuning.core.backbones import load_backbone

        backbone, _ = load_backbone(str(tiny_bert_dir))
        PromptModel(
            backbone, TaskSpec("ft", "classification", labels=("a", "b")), PromptConfig(method="fine-tune")
        ).save_pretrained(tmp_path / "ft")
        fine_tune = client.post("/v1/tasks/ft", json={"path": str(tmp_path / "ft")})
        assert fine_tune.status_code == 422 and "fine-tune" in fine_tune.text
        removed = client.delete("/v1/tasks/news")
        assert removed.status_code == 200 and "news" not in removed.json()["tasks"]
        assert client.delete("/v1/tasks/news").status_code == 404
        gone = client.post("/v1/predict", json={"task": "news", "inputs": ["x"]})
        assert gone.status_code == 404 and "news" not in gone.json()["known_tasks"]
    finally:
        stop.set()
        worker.join(30)
    assert codes and set(codes) == {200} and not wrong
    assert client.get("/v1/tasks").json()["tasks"].__len__() == 7


def test_full_queue_answers_503_and_admin_can_be_disabled(predictor):
    settings = ServeSettings(
        max_batch_size=64, max_wait_ms=1500, max_queue=2, max_inputs=2, allow_admin=False
    )
    with (
        ServerThread(create_app(predictor, settings)) as slow,
        httpx.Client(base_url=slow.url, timeout=30) as c,
    ):
        first: dict[str, httpx.Response] = {}

        def post():
            with httpx.Client(base_url=slow.url, timeout=30) as own:
                first["r"] = own.post("/v1/predict", json={"task": "ner", "inputs": ["a", "b"]})

        thread = threading.Thread(target=post)
        thread.start()
        deadline = time.monotonic() + 10
        while c.get("/health").json()["pending_inputs"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        full = c.post("/v1/predict", json={"task": "ner", "inputs": ["c"]})
        assert full.status_code == 503 and "queue is full" in full.text and full.headers["retry-after"] == "1"
        thread.join(30)
        assert first["r"].status_code == 200
        assert c.post("/v1/predict", json={"task": "ner", "inputs": ["c"]}).status_code == 200
        assert c.post("/v1/tasks/x", json={"path": "/nowhere"}).status_code == 403
        assert c.delete("/v1/tasks/ner").status_code == 403


def test_serve_command_refuses_mixed_backbones_and_fine_tune(demo_checkpoints, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(demo_checkpoints["ner"], other)
    config = json.loads((other / "ptuning_config.json").read_text())
    config.update(backbone="mpnet-base", backbone_fingerprint="fedcba9876543210")
    (other / "ptuning_config.json").write_text(json.dumps(config))
    code = cli_main(
        ["serve", "--prompt", f"a={demo_checkpoints['sentiment']}", "--prompt", f"b={other}", "--port", "0"]
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and "different backbones" in err
        and "'mpnet-base'" in err
        and str(demo_checkpoints["sentiment"]) in err
    )
    assert cli_main(["serve", "--port", "0"]) == 2
    assert "nothing to serve" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "serve",
                "--prompt",
                f"a={demo_checkpoints['ner']}",
                "--prompt",
                f"a={demo_checkpoints['squad']}",
            ]
        )
        == 2
    )
    assert "given twice" in capsys.readouterr().err


def test_serve_command_collects_prompts(demo_checkpoints, tmp_path):
    from ptuning.commands.serve import collect_prompts
    from ptuning.errors import UserError

    folder = tmp_path / "prompts"
    folder.mkdir()
    for name in ("ner", "copa"):
        shutil.copytree(demo_checkpoints[name], folder / name)
    (folder / "notes").mkdir()  # not a checkpoint: skipped
    pairs = collect_prompts(
        [f"s={demo_checkpoints['sentiment']}", str(demo_checkpoints["squad"]), str(folder)], []
    )
    assert pairs == [
        ("s", str(demo_checkpoints["sentiment"])),
        ("squad", str(demo_checkpoints["squad"])),
        ("copa", str(folder / "copa")),
        ("ner", str(folder / "ner")),
    ]
    assert collect_prompts([], [str(folder)]) == pairs[2:]
    with pytest.raises(UserError, match="no checkpoint folders inside"):
        collect_prompts([], [str(folder / "notes")])
    with pytest.raises(UserError, match="given twice"):
        collect_prompts([str(folder)], [str(folder)])


def test_serve_command_shuts_down_gracefully(demo_checkpoints, predictor, tmp_path):
    """SIGTERM while requests wait in a batch: every accepted request is answered, exit code 0."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    for name in ("ner", "copa"):
        shutil.copytree(demo_checkpoints[name], folder / name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    command = [sys.executable, "-m", "ptuning", "serve", "--prompts-dir", str(folder), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--max-wait-ms", "1500", "--max-batch-size", "64"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = None
        for line in process.stderr:
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].split()[0]
                break
        assert url and url.startswith("http://127.0.0.1:"), "the server did not start"
        jobs = [
            ("ner", INPUTS["ner"]),
            ("copa", INPUTS["copa"]),
            ("ner", ["Paris"]),
            ("copa", INPUTS["copa"][:1]),
        ]
        results: dict[int, httpx.Response] = {}

        def post(i, name, inputs):
            with httpx.Client(base_url=url, timeout=30) as own:
                results[i] = own.post("/v1/predict", json={"task": name, "inputs": inputs})

        threads = [threading.Thread(target=post, args=(i, *job)) for i, job in enumerate(jobs)]
        for t in threads:
            t.start()
        accepted = sum(len(inputs) for _, inputs in jobs)
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=url, timeout=10) as c:
            while c.get("/health").json()["pending_inputs"] < accepted and time.monotonic() < deadline:
                time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.4)
        with pytest.raises(httpx.TransportError):  # no new connections once shutting down
            httpx.get(url + "/health", timeout=5)
        for t in threads:
            t.join(30)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    for i, (name, inputs) in enumerate(jobs):
        assert results[i].status_code == 200, results[i].text
        _answers_close(results[i].json()["outputs"], _reference(predictor, name, inputs))


def test_load_script_briefly(server, demo_checkpoints, capsys):
    """The bounded load script, with small counts, against the test server."""
    prompts = [f"--prompt={name}={path}" for name, path in demo_checkpoints.items()]
    limits = [f"--max-inputs={LIMITS['max_inputs']}", f"--max-chars={LIMITS['max_chars']}"]
    code = load_test.main(
        ["--url", server.url, *prompts, *limits, "--requests", "60", "--duration", "2", "--concurrency", "8"]
    )
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert "requests/s" in out and "p99" in out and "PASSED" in out


def test_load_script_refuses_non_loopback_urls(capsys):
    with pytest.raises(SystemExit):
        load_test.main(["--url", "http://10.0.0.1:8000", "--prompt", "a=b"])
    assert "loopback" in capsys.readouterr().err
