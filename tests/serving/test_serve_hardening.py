"""`ptuning serve` against hostile clients and careless input: admin token, Host check, JSON-only
bodies, task cap, neutral path errors, bad Unicode, unknown nested fields, empty inputs, stalled
bodies, departed clients and a shutdown with a backlog."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from ptuning.cli import main as cli_main
from ptuning.commands.serve import allowed_hosts
from ptuning.serving import MultiTaskPredictor
from ptuning.serving.app import GracefulServer, create_app
from ptuning.serving.settings import ServeSettings
from tests.serving.helpers import ServerThread

TOKEN = "hardening-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def predictor(demo_checkpoints):
    names = ("sentiment", "ner", "copa", "squad")
    return MultiTaskPredictor.from_checkpoints({n: demo_checkpoints[n] for n in names}, max_batch_size=8)


@pytest.fixture(scope="module")
def server(predictor):
    with ServerThread(create_app(predictor, ServeSettings(admin_token=TOKEN, max_inputs=8))) as running:
        yield running


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _healthy(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"


# --- admin -------------------------------------------------------------------------------------------


def test_admin_needs_the_bearer_token(client, demo_checkpoints, predictor):
    body = {"path": str(demo_checkpoints["topic"])}
    for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": TOKEN}):
        refused = client.post("/v1/tasks/topic", json=body, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert client.delete("/v1/tasks/ner", headers=headers).status_code == 401
    assert "topic" not in predictor.task_names and "ner" in predictor.task_names
    assert client.post("/v1/tasks/topic", json=body, headers=AUTH).status_code == 201
    assert client.delete("/v1/tasks/topic", headers=AUTH).status_code == 200


def test_admin_is_off_without_a_token_unless_allowed(predictor, demo_checkpoints):
    body = {"path": str(demo_checkpoints["topic"])}
    with ServerThread(create_app(predictor)) as off, httpx.Client(base_url=off.url) as c:
        assert c.post("/v1/tasks/topic", json=body).status_code == 403
        assert c.delete("/v1/tasks/ner").status_code == 403
    settings = ServeSettings(allow_admin_without_token=True)
    with ServerThread(create_app(predictor, settings)) as on, httpx.Client(base_url=on.url) as c:
        assert c.post("/v1/tasks/topic", json=body).status_code == 201
        assert c.delete("/v1/tasks/topic").status_code == 200


def test_admin_without_a_token_needs_a_loopback_bind(capsys):
    code = cli_main(["serve", "--host", "0.0.0.0", "--allow-admin-without-token", "--prompt", "x"])
    assert code == 2 and "loopback" in capsys.readouterr().err
    code = cli_main(["serve", "--admin-token", "short", "--prompt", "x"])
    assert code == 2 and "at least 8 characters" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content_type,content",
    [
        ("text/plain", "{path}"),
        ("application/x-www-form-urlencoded", "path={path}"),
        (None, '{{"path": "{path}"}}'),
    ],
)
def test_bodies_must_be_json(client, predictor, demo_checkpoints, content_type, content):
    """A browser sends text/plain and form POSTs cross-site without a preflight: they never reach a route."""
    headers = {**AUTH, **({"content-type": content_type} if content_type else {})}
    data = content.format(path=demo_checkpoints["topic"]).encode()
    response = client.post("/v1/tasks/topic", content=data, headers=headers)
    assert response.status_code == 415 and "JSON" in response.json()["detail"]
    assert "topic" not in predictor.task_names
    predict = client.post("/v1/predict", content=b'{"task": "ner", "inputs": ["x"]}', headers=headers)
    assert predict.status_code == 415


def test_host_header_is_checked(server, client):
    port = server.url.rsplit(":", 1)[1]
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.2", ""):
        assert client.get("/health", headers={"host": host}).status_code == 400, host
        assert client.delete("/v1/tasks/ner", headers={"host": host, **AUTH}).status_code == 400
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST."):
        assert client.get("/health", headers={"host": host}).status_code == 200, host


def test_allowed_hosts_follow_the_bind_address():
    assert set(allowed_hosts("127.0.0.1", [])) == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("10.1.2.3", ["api.example.org"]) == ("10.1.2.3", "api.example.org")
    assert socket.gethostname() in allowed_hosts("0.0.0.0", []) and "0.0.0.0" not in allowed_hosts(
        "0.0.0.0", []
    )


def test_any_host_with_a_star(predictor):
    with ServerThread(create_app(predictor, ServeSettings(allowed_hosts=("*",)))) as s, httpx.Client() as c:
        assert c.get(s.url + "/health", headers={"host": "anything.example"}).status_code == 200


def test_task_count_is_capped(demo_checkpoints):
    predictor = MultiTaskPredictor.from_checkpoints({"ner": demo_checkpoints["ner"]})
    settings = ServeSettings(admin_token=TOKEN, max_tasks=2)
    with ServerThread(create_app(predictor, settings)) as s, httpx.Client(base_url=s.url, headers=AUTH) as c:
        assert c.post("/v1/tasks/a", json={"path": str(demo_checkpoints["sentiment"])}).status_code == 201
        full = c.post("/v1/tasks/b", json={"path": str(demo_checkpoints["copa"])})
        assert full.status_code == 507 and "limit" in full.text
        assert predictor.task_names == ["a", "ner"]
        assert c.delete("/v1/tasks/a").status_code == 200
        assert c.post("/v1/tasks/b", json={"path": str(demo_checkpoints["copa"])}).status_code == 201


def test_unusable_paths_get_one_neutral_answer(client, tmp_path):
    """The answer never tells which server folders or files exist."""
    afile = tmp_path / "a-file"
    afile.write_text("x")
    messages = set()
    for path in ("/etc", "/etc/passwd", "/nonexistent", str(afile), str(tmp_path), "a\x00b", "../../.."):
        response = client.post("/v1/tasks/probe", json={"path": path}, headers=AUTH)
        assert response.status_code == 422, path
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "path"]
        messages.add(detail["msg"].replace(repr(path), "PATH"))
    assert len(messages) == 1, messages


# --- text at the boundary ------------------------------------------------------------------------------


def _post(client, raw: bytes) -> httpx.Response:
    return client.post("/v1/predict", content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    "raw,loc",
    [
        (rb'{"task": "sentiment", "inputs": ["ok", "bad \ud800 text"]}', ["body", "inputs", 1]),
        (rb'{"task": "sentiment", "inputs": [{"text": "\udfff"}]}', ["body", "inputs", 0, "text"]),
        (rb'{"task": "ner", "inputs": [{"tokens": ["a", "\ud800"]}]}', ["body", "inputs", 0, "tokens", 1]),
        (rb'{"task": "sent\ud800", "inputs": ["x"]}', ["body", "task"]),
        (rb'{"task": "sentiment", "inputs": ["x"], "extra": "\ud800"}', ["body", "extra"]),
        (rb'{"task": 5, "inputs": ["\ud800"]}', ["body", "task"]),
    ],
)
def test_unpaired_surrogates_are_422_naming_the_field(client, raw, loc):
    response = _post(client, raw)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]  # valid JSON, whatever was echoed
    assert errors[0]["loc"] == loc, errors
    _healthy(client)


def test_bodies_that_do_not_parse_are_422(client):
    for raw in (b"\xff\xfe{", b'{"task": "ner", "inputs": ["caf\xe9"]}', b"", b"null", b"[1]"):
        response = _post(client, raw)
        assert response.status_code == 422, (raw, response.text)
        assert response.json()["detail"][0]["loc"][0] == "body"
    _healthy(client)


def test_unknown_nested_field_is_422(client):
    response = client.post(
        "/v1/predict", json={"task": "sentiment", "inputs": [{"text": "a", "text_pari": "b"}]}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "inputs", 0, "text_pari"]
    assert "'text', 'text_pair'" in response.text


EMPTY = [
    ("sentiment", ""),
    ("sentiment", "   "),
    ("sentiment", {"text": ""}),
    ("sentiment", {"text": "fine", "text_pair": " "}),
    ("ner", ""),
    ("ner", {"tokens": []}),
    ("ner", {"tokens": ["John", ""]}),
    ("copa", {"context": "", "choices": ["a", "b"]}),
    ("copa", {"context": "c", "choices": ["a", ""]}),
    ("squad", {"question": "", "context": "Paris ."}),
    ("squad", {"question": "where ?", "context": "  "}),
]


@pytest.mark.parametrize("task,item", EMPTY, ids=[f"{t}-{json.dumps(i)}" for t, i in EMPTY])
def test_empty_text_is_422_for_every_task_type(client, task, item):
    response = client.post("/v1/predict", json={"task": task, "inputs": [item]})
    assert response.status_code == 422, response.text
    assert "empty" in response.text and response.json()["detail"][0]["loc"][:3] == ["body", "inputs", 0]


def test_cli_refuses_invalid_utf8_and_empty_arguments(demo_checkpoints, capsys):
    # Python decodes invalid UTF-8 in argv to lone surrogates (surrogateescape): b"\xff" -> "\udcff"
    code = cli_main(["predict", "--checkpoint", str(demo_checkpoints["sentiment"]), "fine", "bad \udcff"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "input 1" in err and "UTF-8" in err
    code = cli_main(["predict", "--checkpoint", str(demo_checkpoints["ner"]), " "])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "input 0" in err and "empty" in err


def test_invalid_utf8_bytes_on_a_real_command_line(demo_checkpoints):
    """The same through a real process: argv bytes that are not UTF-8 are one line, exit 2."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ptuning",
            "predict",
            "--checkpoint",
            str(demo_checkpoints["sentiment"]),
            b"caf\xe9",
        ],
        capture_output=True,
        env={**os.environ, "PYTHONUTF8": "1", "LC_ALL": "C.UTF-8"},
        timeout=120,
    )
    err = done.stderr.decode("utf-8", "replace").strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert "input 0" in err and "not valid Unicode" in err and done.stdout == b""


def test_a_long_input_does_not_warn_of_indexing_errors(predictor, capfd):
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        outputs = predictor.predict("sentiment", ["word " * 20_000])
    finally:
        hf_logging.set_verbosity(before)
    assert outputs[0]["truncated"] is True
    assert "indexing errors" not in capfd.readouterr().err


# --- slow clients, departed clients, shutdown ------------------------------------------------------------


def test_a_stalled_body_gets_408(predictor):
    with ServerThread(create_app(predictor, ServeSettings(body_timeout_s=0.5))) as s:
        host, port = s.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                b'content-length: 100\r\n\r\n{"task": '
            )
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        with httpx.Client(base_url=s.url) as c:
            _healthy(c)


def _slow(predictor, monkeypatch, seconds: float) -> None:
    compute = predictor.compute_parts  # what the batcher's worker runs, once a batch

    def slow(parts, **kwargs):
        time.sleep(seconds)
        return compute(parts, **kwargs)

    monkeypatch.setattr(predictor, "compute_parts", slow)


def test_work_of_departed_clients_is_dropped(predictor, monkeypatch):
    _slow(predictor, monkeypatch, 0.3)
    app = create_app(predictor, ServeSettings(max_batch_size=1, max_wait_ms=0))
    with ServerThread(app) as s, httpx.Client(base_url=s.url, timeout=30) as c:

        def leave_early():
            # the first ones are answered in time; the others give up and close their connection
            with contextlib.suppress(httpx.ReadTimeout):
                httpx.post(s.url + "/v1/predict", json={"task": "ner", "inputs": ["x"]}, timeout=0.5)

        threads = [threading.Thread(target=leave_early) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        deadline = time.monotonic() + 30
        while c.get("/health").json()["pending_inputs"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = c.get("/health").json()
        assert stats["pending_inputs"] == 0
        assert stats["cancelled"] >= 6 and stats["requests"] + stats["cancelled"] <= 12, stats
        assert c.post("/v1/predict", json={"task": "ner", "inputs": ["x"]}).status_code == 200


def test_shutdown_with_a_backlog_answers_or_503s_every_request(predictor, monkeypatch):
    """should_exit (what SIGTERM sets) while 24 requests (6 s of work) queue behind a slow model: each
    gets 200 or 503 with Retry-After, never 500 or a reset, and the server stops (the drain
    deadline is 3 s, uvicorn's graceful timeout 4 s)."""
    _slow(predictor, monkeypatch, 0.25)
    app = create_app(predictor, ServeSettings(max_batch_size=1, max_wait_ms=0))
    config = uvicorn.Config(app, port=0, log_level="warning", timeout_graceful_shutdown=4)
    server = GracefulServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    results: dict[int, httpx.Response | Exception] = {}

    def post(i):
        try:
            results[i] = httpx.post(
                url + "/v1/predict", json={"task": "ner", "inputs": [f"w{i}"]}, timeout=30
            )
        except Exception as exc:  # recorded, asserted below
            results[i] = exc

    threads = [threading.Thread(target=post, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=url) as c:  # all 24 accepted (queued, running or answered)
        while time.monotonic() < deadline:
            health = c.get("/health").json()
            if health["pending_inputs"] + health["requests"] >= 24:
                break
            time.sleep(0.02)
    server.should_exit = True
    for t in threads:
        t.join(30)
    thread.join(30)
    assert not thread.is_alive()
    codes = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in results.values()]
    assert len(codes) == 24 and set(codes) <= {200, 503}, codes
    assert 200 in codes and 503 in codes, (codes, app.state.batcher.stats)
    for r in results.values():
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and "shutting down" in r.text
