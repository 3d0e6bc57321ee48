"""`ptuning serve` under requests that cost too much or take too long: model rows per request,
fair turns for small requests beside a large one, long task lists, header and body deadlines on
raw sockets, strict Host headers, no redirects, counted 5xx answers, answers whatever a label
holds, the public and the admin task listing, the docs pages."""

from __future__ import annotations

import json
import select
import shutil
import socket
import threading
import time

import httpx
import pytest

from ptuning.cli import main as cli_main
from ptuning.errors import DataError
from ptuning.serving import MicroBatcher, MultiTaskPredictor
from ptuning.serving.app import create_app
from ptuning.serving.guards import host_of
from ptuning.serving.settings import ServeSettings
from tests.serving.helpers import ServerThread
from tests.serving.test_serving import _answers_close

TOKEN = "limits-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def predictor(demo_checkpoints):
    names = ("sentiment", "copa", "squad", "ner")
    return MultiTaskPredictor.from_checkpoints({n: demo_checkpoints[n] for n in names}, max_batch_size=8)


def _serve(predictor, **settings) -> ServerThread:
    return ServerThread(create_app(predictor, ServeSettings(admin_token=TOKEN, **settings)))


@pytest.fixture(scope="module")
def server(predictor):
    with _serve(predictor, max_rows=24) as running:
        yield running


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _slow(predictor, monkeypatch, per_row: float) -> None:
    """A model whose passes cost `per_row` seconds a row (the tiny one costs next to nothing)."""
    compute = predictor.compute_parts  # the worker's call, once a batch

    def slow(parts, **kwargs):
        rows = sum(sum(r.task.model.head.num_rows(r.features[f]) for f in fs) for r, fs in parts)
        time.sleep(per_row * rows)
        return compute(parts, **kwargs)

    monkeypatch.setattr(predictor, "compute_parts", slow)


# --- model rows per request, fair turns ------------------------------------------------------------

LONG_CONTEXT = {"question": "where did John go ?", "context": "John went home to Paris . " * 45}


def test_model_rows_per_request_are_capped(client, predictor):
    """QA windows and multiple-choice choices count: 413 naming the rows and the limit."""
    windows = predictor.prepare("squad", [LONG_CONTEXT]).num_rows
    assert windows > 1  # the context is several windows of the tiny backbone
    fits = 24 // windows
    assert (
        client.post("/v1/predict", json={"task": "squad", "inputs": [LONG_CONTEXT] * fits}).status_code == 200
    )
    refused = client.post("/v1/predict", json={"task": "squad", "inputs": [LONG_CONTEXT] * (fits + 1)})
    assert refused.status_code == 413, refused.text
    detail = refused.json()["detail"]
    assert (
        f"{(fits + 1) * windows} model rows" in detail and "the limit is 24" in detail and "window" in detail
    )
    copa = {"context": "It rained .", "choices": ["wet", "dry"]}  # two rows each
    assert client.post("/v1/predict", json={"task": "copa", "inputs": [copa] * 12}).status_code == 200
    assert client.post("/v1/predict", json={"task": "copa", "inputs": [copa] * 13}).status_code == 413
    assert (
        client.post("/v1/predict", json={"tasks": ["sentiment", "ner"], "inputs": ["x"] * 12}).status_code
        == 200
    )
    tasks = client.post("/v1/predict", json={"tasks": ["sentiment", "ner"], "inputs": ["x"] * 13})
    assert tasks.status_code == 413 and "13 inputs x 2 tasks" in tasks.json()["detail"]


def test_a_small_request_is_answered_while_a_large_one_runs(predictor, monkeypatch):
    """A 64-row request (16 batches of 4 rows, 0.1 s each) and then a 1-row one: the small one
    takes a turn between the large one's batches instead of waiting for all of them."""
    _slow(predictor, monkeypatch, 0.025)
    with (
        _serve(predictor, max_batch_size=4, max_wait_ms=0) as s,
        httpx.Client(base_url=s.url, timeout=60) as c,
    ):
        done: dict[str, float] = {}

        def large():
            started = time.monotonic()
            response = c.post(
                "/v1/predict", json={"task": "sentiment", "inputs": [f"w{i}" for i in range(64)]}
            )
            assert response.status_code == 200 and len(response.json()["outputs"]) == 64
            done["large"] = time.monotonic() - started
            done["large_at"] = time.monotonic()

        thread = threading.Thread(target=large)
        thread.start()
        deadline = time.monotonic() + 30
        while c.get("/health").json()["batches"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the large request is running
        started = time.monotonic()
        small = c.post("/v1/predict", json={"task": "sentiment", "inputs": ["fine"]})
        done["small"] = time.monotonic() - started
        small_at = time.monotonic()
        thread.join(60)
        assert small.status_code == 200 and "large" in done
        assert small_at < done["large_at"], done  # answered before the large one finished
        assert done["small"] < done["large"] / 3, done  # about two batches, not the whole large request


def test_a_request_run_in_slices_answers_as_in_one_pass(predictor):
    """Batches of 3 rows cut each request into slices (QA windows and choices kept whole, features
    run shortest first): the answers are those of one pass over the whole request."""
    requests = {
        "squad": [LONG_CONTEXT, {"question": "who ?", "context": "Mary sings ."}, LONG_CONTEXT],
        "copa": [{"context": "It rained .", "choices": ["wet", "dry"]}] * 2
        + [{"context": "The man fell down the stairs .", "choices": ["he got up", "he flew"]}],
        "sentiment": ["a gripping , funny film", "dull", "the plot was long " * 20, "fine"],
    }
    with MicroBatcher(predictor, max_batch_size=3, max_wait_ms=0) as batcher:
        futures = {t: batcher.submit(predictor.prepare(t, inputs)) for t, inputs in requests.items()}
        for task, inputs in requests.items():
            prepared = predictor.prepare(task, inputs)
            got = predictor.format(prepared, futures[task].result(60))
            _answers_close(got, predictor.predict(task, inputs), tol=1e-5)
        assert batcher.stats["batches"] >= 6 and batcher.stats["requests"] == 3


# --- long task lists -------------------------------------------------------------------------------------


def test_a_long_task_list_is_answered_at_once(client, predictor):
    """50,000 names (450 KB): 413 without looking at them, and /health is not held up meanwhile."""
    names = [f"u{i}" for i in range(50_000)]
    timings: dict[str, float] = {}

    def post():
        started = time.monotonic()
        response = client.post("/v1/predict", json={"tasks": names, "inputs": ["x"]})
        timings["post"] = time.monotonic() - started
        timings["status"] = response.status_code
        timings["detail"] = response.json()["detail"]

    thread = threading.Thread(target=post)
    thread.start()
    with httpx.Client(base_url=client.base_url, timeout=30) as other:
        started = time.monotonic()
        assert other.get("/health").status_code == 200
        timings["health"] = time.monotonic() - started
    thread.join(60)
    assert timings["status"] == 413 and "50000 tasks" in timings["detail"], timings
    assert timings["post"] < 10 and timings["health"] < 5, timings  # was 20 s on a quadratic check
    # at the limit (64 names, all unknown), and a repeat at the end of a long list: linear checks
    unknown = client.post("/v1/predict", json={"tasks": names[:64], "inputs": ["x"]})
    assert unknown.status_code == 404 and "'u0'" in unknown.json()["detail"]
    started = time.monotonic()
    with pytest.raises(ValueError, match="'u0' is listed twice"):
        predictor.tasks_for([*names, "u0"])
    assert time.monotonic() - started < 1


# --- header and body deadlines (raw sockets) ---------------------------------------------------------------


def _address(server: ServerThread) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (bounded by `limit` seconds)."""
    started = time.monotonic()
    data = b""
    sock.settimeout(limit)
    while time.monotonic() - started < limit:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


@pytest.fixture(scope="module")
def quick(predictor):
    """Deadlines of a second: headers, body, keep-alive."""
    with _serve(predictor, header_timeout_s=1, body_timeout_s=1, keep_alive_s=1) as running:
        yield running


def test_a_partial_header_gets_408_and_is_closed(quick):
    with socket.create_connection(_address(quick), timeout=10) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: appl")
        data, waited = _read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"headers did not arrive within 1 s" in data and waited < 5


def test_an_idle_connection_is_closed(quick):
    with socket.create_connection(_address(quick), timeout=10) as sock:  # never sends a byte
        data, waited = _read_until_closed(sock, 10)
    assert data == b"" and waited < 5
    with socket.create_connection(_address(quick), timeout=10) as sock:  # one answer, then idle
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, waited = _read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 200") and waited < 5
    with socket.create_connection(_address(quick), timeout=10) as sock:  # an answer, then half a header
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /health HT")
        data, waited = _read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in data and waited < 5


def test_oversized_headers_are_400(quick):
    """Headers past 16 KiB are refused as they come, not buffered without end."""
    with socket.create_connection(_address(quick), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nx-padding: " + b"a" * 20_000)
        data, waited = _read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 400") and waited < 5, data


def test_a_trickling_body_gets_408_at_its_deadline(quick):
    """One byte every 0.2 s never stalls, but the body is not in within 1 s of the headers: 408, closed."""
    body = json.dumps({"task": "sentiment", "inputs": ["a slow and steady text"]}).encode()
    with socket.create_connection(_address(quick), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        started = time.monotonic()
        for index in range(len(body)):  # bounded: at most the body's bytes
            try:
                sock.sendall(body[index : index + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0.2)[0]:
                break
        data, _ = _read_until_closed(sock, 10)
        waited = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"did not arrive within 1 s" in data
    # refused before the body was complete, and closed (the read above ends at the close)
    assert waited < 5 and index < len(body) - 1
    with httpx.Client(base_url=quick.url) as c:
        assert c.get("/health").json()["status"] == "ok"


# --- Host headers, paths, listing, docs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "127.0.0.1:80@evil.com",
        "evil.com@127.0.0.1",
        "[::1",
        "::1",
        "localhost:80:80",
        "localhost:99999",
        "localhost:",
        "local host",
        "[::1]x",
        "localhost/x",
        "",
    ],
)
def test_malformed_host_headers_are_400(client, header):
    assert host_of(header) is None
    assert client.get("/health", headers={"host": header}).status_code == 400


def test_well_formed_host_headers(client):
    assert host_of("[::1]:8000") == "::1" and host_of("LOCALHOST.:80") == "localhost"
    for header in ("[::1]", "[::1]:8000", "127.0.0.1:8000", "localhost"):
        assert client.get("/health", headers={"host": header}).status_code == 200, header


def test_trailing_slashes_are_404_not_redirects(client):
    for method, path in (
        ("POST", "/v1/tasks/x/"),
        ("DELETE", "/v1/tasks/ner/"),
        ("POST", "/v1/predict/"),
        ("GET", "/v1/tasks/"),
        ("GET", "/health/"),
    ):
        response = client.request(
            method, path, headers={**AUTH, "content-type": "application/json"}, content=b"{}"
        )
        assert response.status_code == 404, (method, path, response.status_code)
        assert "location" not in response.headers


def test_the_task_listing_shows_checkpoints_to_the_admin_only(client, predictor):
    public = client.get("/v1/tasks").json()
    assert public["tasks"] == [{"name": t.name, "task_type": t.spec.task_type} for t in predictor.tasks()]
    for headers in ({"authorization": "Bearer wrong-token"}, {"authorization": TOKEN}):
        assert client.get("/v1/tasks", headers=headers).json()["tasks"] == public["tasks"]
    admin = client.get("/v1/tasks", headers=AUTH).json()["tasks"]
    assert [t["checkpoint"] for t in admin] == [t.path for t in predictor.tasks()]
    assert admin[0]["labels"] and "prompt_length" in admin[0]


def test_docs_pages_only_with_the_flag(predictor):
    with (
        ServerThread(create_app(predictor, ServeSettings(docs=True))) as s,
        httpx.Client(base_url=s.url) as c,
    ):
        assert c.get("/docs").status_code == 200 and c.get("/redoc").status_code == 404
        assert c.get("/openapi.json").status_code == 200


# --- 5xx counted, answers whatever labels hold ------------------------------------------------------------------


def test_health_counts_every_5xx(predictor, monkeypatch, demo_checkpoints):
    settings = {"max_tasks": len(predictor.task_names)}
    with _serve(predictor, **settings) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.get("/health").json()["answered_5xx"] == 0

        def broken(parts, **kwargs):
            raise RuntimeError("a fault of the model")

        monkeypatch.setattr(predictor, "compute_parts", broken)
        failed = c.post("/v1/predict", json={"task": "sentiment", "inputs": ["x"]})
        assert failed.status_code == 500 and "internal server error" in failed.json()["detail"]
        full = c.post("/v1/tasks/more", json={"path": str(demo_checkpoints["topic"])}, headers=AUTH)
        assert full.status_code == 507
        health = c.get("/health").json()
        assert health["answered_5xx"] == 2 and health["internal_errors"] == 1 and health["errors"] == 1, (
            health
        )
        monkeypatch.undo()
        assert c.post("/v1/predict", json={"task": "sentiment", "inputs": ["x"]}).status_code == 200
        assert c.get("/health").json()["answered_5xx"] == 2


def test_answers_are_json_whatever_text_they_hold(client, predictor, monkeypatch):
    """An answer holding text that is not valid Unicode (a checkpoint's label) is escaped, not a 500."""
    format_ = predictor.format
    monkeypatch.setattr(
        predictor, "format", lambda r, out: [{**a, "label": "\ud800"} for a in format_(r, out)]
    )
    for body in ({"task": "sentiment", "inputs": ["x"]}, {"tasks": ["sentiment", "ner"], "inputs": ["x"]}):
        response = client.post("/v1/predict", json=body)
        assert response.status_code == 200 and b"\\ud800" in response.content
        response.content.decode("ascii")  # strict ASCII JSON


def test_a_label_that_is_not_unicode_is_refused(client, demo_checkpoints, tmp_path):
    """A hot-added checkpoint whose label is a lone surrogate: a 422 naming the label (the validator's
    refusal), not a task every answer of which is a 500."""
    folder = tmp_path / "bad-label"
    shutil.copytree(demo_checkpoints["sentiment"], folder)
    config = json.loads((folder / "ptuning_config.json").read_text())
    config["task"]["labels"][0] = "\ud800"
    (folder / "ptuning_config.json").write_text(json.dumps(config))
    before = client.get("/health").json()["answered_5xx"]
    added = client.post("/v1/tasks/badlabel", json={"path": str(folder)}, headers=AUTH)
    try:
        assert added.status_code == 422, added.text
        assert "labels[0]" in added.text and "Unicode" in added.text
        assert client.get("/health").json()["answered_5xx"] == before
    finally:
        client.delete("/v1/tasks/badlabel", headers=AUTH)


def test_an_input_error_of_the_parser_is_422(client, predictor, monkeypatch):
    """The parser's DataError (e.g. a pair-trained task's input without its pair) is a 422 naming it."""

    def refuse(task, inputs):
        raise DataError("input 0: field 'text_pair' is missing; this task was trained on text pairs")

    monkeypatch.setattr(predictor, "prepare", refuse)
    response = client.post("/v1/predict", json={"task": "sentiment", "inputs": [{"text": "a"}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "inputs", 0, "text_pair"]


# --- the command line ------------------------------------------------------------------------------------------------


def test_serve_names_the_prompt_flag(tmp_path, capsys):
    empty = tmp_path / "not-a-checkpoint"
    empty.mkdir()
    for spec in (str(empty), str(tmp_path / "missing"), f"x={tmp_path / 'missing'}"):
        code = cli_main(["serve", "--prompt", spec, "--port", "0"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(f"ptuning serve: error: --prompt {spec}:"), err
        assert "--prompts-dir" not in err and len(err.splitlines()) == 1
    assert cli_main(["serve", "--max-rows", "0", "--prompt", str(empty)]) == 2
    assert "max_rows must be >= 1" in capsys.readouterr().err
