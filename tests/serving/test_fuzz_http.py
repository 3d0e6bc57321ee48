"""Fuzzing the HTTP API: Schemathesis cases from its OpenAPI schema, and Hypothesis bodies with
hostile text (lone surrogates, deep nesting, odd types). No answer may be a 5xx, every answer must
be valid JSON, and the server must stay healthy. Bounded (derandomized, a few dozen cases per
operation) so it runs in seconds in CI."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptuning.serving import MultiTaskPredictor
from ptuning.serving.app import create_app
from ptuning.serving.guards import host_of
from ptuning.serving.settings import ServeSettings
from tests.serving.helpers import ServerThread

TOKEN = "fuzzing-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
FUZZ = settings(
    max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


@pytest.fixture(scope="module")
def fuzz_server(demo_checkpoints):
    names = ("sentiment", "similarity", "copa", "ner", "squad", "intent")
    predictor = MultiTaskPredictor.from_checkpoints(
        {n: demo_checkpoints[n] for n in names}, max_batch_size=16
    )
    settings_ = ServeSettings(admin_token=TOKEN, max_inputs=8, max_chars=2000, max_tasks=8, max_rows=40)
    with ServerThread(create_app(predictor, settings_)) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


@pytest.fixture(scope="module")
def http(fuzz_server):
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as client:
        yield client


def _assert_sound(response_status: int, body: bytes, what: str, http: httpx.Client) -> None:
    assert response_status < 500, (what, response_status, body[:500])
    if body:
        json.loads(body)  # every answer is JSON, whatever text came in
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok", what


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_schema_cases_never_get_a_5xx(api_schema, http, mode):
    """Every operation of /openapi.json, with valid (positive) and schema-violating (negative) cases."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/tasks/{name}", "/health"}
    fuzzed = set()
    for operation in operations:
        if mode == schemathesis.GenerationMode.NEGATIVE and not operation.body:
            continue  # GET /health, DELETE (any string is a valid name): nothing to violate

        @given(case=operation.as_strategy(generation_mode=mode))
        @FUZZ
        def check(case):
            response = case.call(headers=AUTH, timeout=30)
            _assert_sound(response.status_code, response.content, case.as_curl_command(), http)

        check()
        fuzzed.add(f"{operation.method.upper()} {operation.path}")
    assert {"POST /v1/predict", "POST /v1/tasks/{name}"} <= fuzzed


# --- Hypothesis bodies with text Schemathesis does not generate ------------------------------------

TEXT = st.text(st.characters(codec=None, categories=None), max_size=12) | st.sampled_from(
    ["\ud800", "a\udfffb", "\udcff", "", " ", "John", "text_pari", "x" * 3000]
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["text", "text_pair", "tokens", "context", "choices", "question", "text_pari"])
INPUT = TEXT | st.dictionaries(FIELDS, TEXT | st.lists(TEXT, max_size=3), max_size=3) | VALUES
TASKS = st.sampled_from(["sentiment", "similarity", "copa", "ner", "squad", "intent"]) | TEXT
BODIES = st.fixed_dictionaries({"task": TASKS, "inputs": st.lists(INPUT, max_size=4)}) | VALUES


@given(body=BODIES)
@FUZZ
def test_hostile_predict_bodies_never_get_a_5xx(http, body):
    raw = json.dumps(body).encode()  # lone surrogates travel as JSON escapes ("\ud800")
    response = http.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    _assert_sound(response.status_code, response.content, raw[:300], http)


@given(raw=st.binary(max_size=64) | st.just(b'{"task": "ner", "inputs": [' * 3000))
@FUZZ
def test_garbage_bytes_never_get_a_5xx(http, raw):
    response = http.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    _assert_sound(response.status_code, response.content, raw[:100], http)


@given(name=TEXT.filter(lambda s: "/" not in s and "?" not in s and "#" not in s), path=VALUES)
@FUZZ
def test_hostile_admin_bodies_never_get_a_5xx(http, name, path):
    from urllib.parse import quote

    url = "/v1/tasks/" + quote(name.encode("utf-8", "surrogatepass"), safe="")
    raw = json.dumps({"path": path}).encode()
    response = http.post(url, content=raw, headers={"content-type": "application/json", **AUTH})
    _assert_sound(response.status_code, response.content, raw[:300], http)
    assert response.status_code != 201


# --- the cases a hostile-input review found (each once a 5xx, a hang or a leak) ---------------------------

LONG_QA = {"question": "where did John go ?", "context": "John went home to Paris . " * 45}
HOSTILE_PREDICT = {
    "50,000 task names": {"tasks": [f"u{i}" for i in range(50_000)], "inputs": ["x"]},
    "8 unknown task names": {"tasks": [f"u{i}" for i in range(8)], "inputs": ["x"]},
    "a name repeated at the end": {"tasks": ["ner", "copa", "squad", "ner"], "inputs": ["x"]},
    "task names with surrogates": {"tasks": ["ner", "\ud800"], "inputs": ["x"]},
    "QA windows past the row cap": {"task": "squad", "inputs": [LONG_QA] * 8},
    "choices past the row cap": {"task": "copa", "inputs": [{"context": "c", "choices": ["a", "b"]}] * 8},
    "a pair-less input": {"task": "similarity", "inputs": [{"text": "only one side"}]},
    "an invisible-only text": {"task": "sentiment", "inputs": ["\u200b\u200b"]},
}


@pytest.mark.parametrize("body", list(HOSTILE_PREDICT.values()), ids=list(HOSTILE_PREDICT))
def test_hostile_cases_of_the_review_never_get_a_5xx(http, body):
    started = time.monotonic()
    raw = json.dumps(body).encode()  # lone surrogates travel as JSON escapes ("\ud800")
    response = http.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    _assert_sound(response.status_code, response.content, raw[:200], http)
    assert time.monotonic() - started < 10  # a quadratic check took 20 s on 50,000 names
    assert http.get("/health").json()["answered_5xx"] == 0


@given(
    header=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
    | st.sampled_from(["127.0.0.1:80@evil.com", "[::1", "[::1]:80", "localhost:80:80", "::1", "LOCALHOST."])
)
@FUZZ
def test_hostile_host_headers_are_400_unless_the_servers_own(fuzz_server, http, header):
    response = http.get("/health", headers={"host": header})
    _assert_sound(response.status_code, response.content, header, http)
    own = host_of(header) in ServeSettings().allowed_hosts
    assert response.status_code == (200 if own else 400), (header, response.status_code)


@pytest.mark.parametrize("path", ["/v1/tasks/ner/", "/v1/predict/", "/v1/tasks/", "/redoc", "/docs"])
def test_no_redirects_and_no_doc_pages(http, path):
    for method in ("GET", "POST", "DELETE"):
        response = http.request(
            method, path, headers={"content-type": "application/json", **AUTH}, content=b"{}"
        )
        assert response.status_code in (404, 405) and "location" not in response.headers, (method, path)
