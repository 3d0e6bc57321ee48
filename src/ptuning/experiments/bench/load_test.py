"""Bounded load test of `ptuning serve`, on loopback only.

Sends a fixed number of requests over a fixed time (open loop: request i leaves at i * duration /
requests; at most --concurrency in flight), mixing good requests of several tasks with bad ones
(unknown task, malformed JSON, wrong types, missing fields, too many inputs, too long input, empty
inputs). Every good answer is checked against `ptuning.inference.Predictor` (what `ptuning predict`
gives, one task at a time); every bad request must get its status code. Prints requests per second
and p50/p99 latency; exits 1 if anything was wrong.

  python scripts/load_test.py                          # starts its own server with tiny checkpoints
  python scripts/load_test.py --requests 2000 --duration 20 --concurrency 32
  python scripts/load_test.py --url http://127.0.0.1:8000 --prompt sst2=outputs/sst2 ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ...testing import make_checkpoints
from .demo import make_input

LIMITS = {"max_inputs": 8, "max_chars": 2000}


BAD_KINDS = {
    "unknown_task": 404,
    "malformed_json": 422,
    "task_not_a_string": 422,
    "input_not_str_or_object": 422,
    "field_wrong_type": 422,
    "missing_field": 422,
    "empty_inputs": 422,
    "too_many_inputs": 413,
    "input_too_long": 413,
}


def make_bad(kind: str, tasks: dict[str, str], rng: random.Random, limits: dict) -> tuple[bytes, int]:
    """A bad request body of the given kind and the status it must get."""
    name = rng.choice(sorted(tasks))
    text_task = next((n for n, t in sorted(tasks.items()) if t == "classification"), name)
    body: Any
    if kind == "unknown_task":
        body = {"task": "no-such-task", "inputs": ["hello"]}
    elif kind == "malformed_json":
        return b'{"task": "' + name.encode() + b'", "inputs": ["unterminated', 422
    elif kind == "task_not_a_string":
        body = {"task": 7, "inputs": ["hello"]}
    elif kind == "input_not_str_or_object":
        body = {"task": name, "inputs": [12345]}
    elif kind == "field_wrong_type":
        body = {"task": text_task, "inputs": [{"text": 3.5}]}
    elif kind == "missing_field":
        body = {"task": text_task, "inputs": [{"text_pair": "only the second text"}]}
    elif kind == "empty_inputs":
        body = {"task": name, "inputs": []}
    elif kind == "too_many_inputs":
        body = {"task": text_task, "inputs": ["x"] * (limits["max_inputs"] + 1)}
    elif kind == "input_too_long":
        body = {"task": text_task, "inputs": ["a" * (limits["max_chars"] + 1)]}
    else:
        raise ValueError(kind)
    return json.dumps(body).encode(), BAD_KINDS[kind]


def close(a: Any, b: Any, tol: float) -> bool:
    """Answers equal, floats within `tol` (mixed batches differ from one task alone by ~1e-6)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return abs(a - b) <= tol
    return a == b


def reference_answers(
    prompts: dict[str, str], max_length: int | dict[str, int], pool: dict[str, list]
) -> dict[str, list]:
    """What `ptuning predict` answers for each pooled input, one task at a time (`max_length`: one
    for every task, or each task's as the server lists it)."""
    from ptuning.inference import Predictor

    answers = {}
    for name, items in pool.items():
        length = max_length[name] if isinstance(max_length, dict) else max_length
        predictor = Predictor.from_checkpoint(prompts[name], max_length=length)
        answers[name] = predictor.predict(items)
    return answers


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def run_load(
    url: str, plan: list[dict], duration: float, concurrency: int, timeout: float
) -> list[dict]:
    import httpx

    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        start = time.perf_counter()

        async def one(i: int, item: dict) -> dict:
            delay = start + i * duration / len(plan) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with semaphore:
                sent = time.perf_counter()
                try:
                    response = await client.post(
                        "/v1/predict", content=item["body"], headers={"content-type": "application/json"}
                    )
                    status, payload = response.status_code, response.content
                except httpx.HTTPError as exc:
                    status, payload = None, repr(exc).encode()
                return {**item, "status": status, "payload": payload, "latency": time.perf_counter() - sent}

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(plan)))
        wall = time.perf_counter() - start
    for result in results:
        result["wall"] = wall
    return results


def build_plan(
    tasks: dict[str, str], n: int, bad_share: float, rng: random.Random, limits: dict, pool_size: int
):
    pool = {name: [make_input(kind, rng) for _ in range(pool_size)] for name, kind in tasks.items()}
    plan = []
    kinds = sorted(BAD_KINDS)
    for i in range(n):
        if rng.random() < bad_share:
            kind = kinds[i % len(kinds)]
            body, status = make_bad(kind, tasks, rng, limits)
            plan.append({"kind": kind, "body": body, "expect": status})
        else:
            name = rng.choice(sorted(tasks))
            picks = [rng.randrange(pool_size) for _ in range(rng.randint(1, min(4, limits["max_inputs"])))]
            body = json.dumps({"task": name, "inputs": [pool[name][p] for p in picks]}).encode()
            plan.append({"kind": "good", "task": name, "picks": picks, "body": body, "expect": 200})
    return plan, pool


def check(results: list[dict], expected: dict[str, list], tol: float) -> dict[str, Any]:
    failures = []
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        counts = by_kind.setdefault(r["kind"], {"sent": 0, "ok": 0})
        counts["sent"] += 1
        good = r["status"] == r["expect"]
        if good and r["kind"] == "good":
            body = json.loads(r["payload"])
            want = [expected[r["task"]][p] for p in r["picks"]]
            good = body.get("task") == r["task"] and close(body.get("outputs"), want, tol)
        if good:
            counts["ok"] += 1
        elif len(failures) < 10:
            failures.append(
                f"{r['kind']}: expected {r['expect']}, got {r['status']}: {r['payload'][:300].decode(errors='replace')}"
            )
    latencies = [r["latency"] for r in results]
    good_latencies = [r["latency"] for r in results if r["kind"] == "good"]
    wall = results[0]["wall"] if results else 0.0
    return {
        "requests": len(results),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(results) / wall, 1) if wall else 0.0,
        "good_inputs_per_s": round(sum(len(r["picks"]) for r in results if r["kind"] == "good") / wall, 1)
        if wall
        else 0.0,
        "p50_ms": round(1000 * percentile(latencies, 50), 1),
        "p99_ms": round(1000 * percentile(latencies, 99), 1),
        "good_p50_ms": round(1000 * percentile(good_latencies, 50), 1),
        "good_p99_ms": round(1000 * percentile(good_latencies, 99), 1),
        "by_kind": by_kind,
        "failures": failures,
        "passed": not failures and all(c["ok"] == c["sent"] for c in by_kind.values()),
    }


def start_server(prompts: dict[str, Path], args) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable,
        "-m",
        "ptuning",
        "serve",
        *[f"--prompt={name}={path}" for name, path in prompts.items()],
        "--host=127.0.0.1",
        "--port=0",
        f"--max-batch-size={args.max_batch_size}",
        f"--max-wait-ms={args.max_wait_ms}",
        f"--max-inputs={LIMITS['max_inputs']}",
        f"--max-chars={LIMITS['max_chars']}",
    ]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    log = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        log.append(line)
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].split()[0]
            return process, url
    process.kill()
    raise SystemExit("the server did not start:\n" + "".join(log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="requests in all (default: 400)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds to spread them over (default: 10)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight at most (default: 16)"
    )
    parser.add_argument("--bad-share", type=float, default=0.25, help="share of bad requests (default: 0.25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds (default: 60)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="for probabilities and scores")
    parser.add_argument("--url", default=None, help="a running server on loopback (default: start one)")
    parser.add_argument(
        "--prompt", action="append", default=[], metavar="NAME=DIR", help="with --url: the served checkpoints"
    )
    parser.add_argument("--max-batch-size", type=int, default=32, help="for the server it starts")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="for the server it starts")
    parser.add_argument("--max-inputs", type=int, default=None, help="with --url: the server's limit")
    parser.add_argument("--max-chars", type=int, default=None, help="with --url: the server's limit")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.duration <= 0 or args.concurrency < 1:
        parser.error("--requests, --duration and --concurrency must be positive")
    limits = dict(LIMITS)
    if args.max_inputs:
        limits["max_inputs"] = args.max_inputs
    if args.max_chars:
        limits["max_chars"] = args.max_chars

    import httpx

    process = None
    with tempfile.TemporaryDirectory(prefix="ptuning-load-") as tmp:
        if args.url:
            host = urlparse(args.url).hostname
            if host not in ("127.0.0.1", "localhost", "::1"):
                parser.error("--url must be a loopback address (127.0.0.1, localhost, ::1)")
            if not args.prompt:
                parser.error("--url needs --prompt NAME=DIR for every served task, to check the answers")
            prompts = dict(p.split("=", 1) for p in args.prompt)
            url = args.url.rstrip("/")
        else:
            prompts = {name: str(path) for name, path in make_checkpoints(tmp).items()}
            process, url = start_server(prompts, args)
        try:
            served = httpx.get(url + "/v1/tasks", timeout=30).json()
            tasks = {t["name"]: t["task_type"] for t in served["tasks"] if t["name"] in prompts}
            if not tasks:
                raise SystemExit("none of the --prompt tasks is served at " + url)
            rng = random.Random(args.seed)
            plan, pool = build_plan(tasks, args.requests, args.bad_share, rng, limits, pool_size=12)
            lengths = {t["name"]: t.get("max_length", served["max_length"]) for t in served["tasks"]}
            expected = reference_answers(prompts, lengths, pool)
            results = asyncio.run(run_load(url, plan, args.duration, args.concurrency, args.timeout))
            health = httpx.get(url + "/health", timeout=30).json()
        finally:
            exit_code = None
            if process is not None:
                process.send_signal(signal.SIGTERM)
                try:
                    exit_code = process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    exit_code = "killed"
    summary = check(results, expected, args.tolerance)
    summary["server"] = {k: health.get(k) for k in ("batches", "mixed_batches", "requests", "rows", "errors")}
    summary["server_alive_after_load"] = health.get("status") == "ok"
    if process is not None:
        summary["server_exit_code"] = exit_code
        summary["passed"] = summary["passed"] and exit_code == 0
    summary["passed"] = summary["passed"] and summary["server_alive_after_load"]
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['requests']} requests over {summary['wall_s']} s (offered {args.requests / args.duration:.1f}/s, "
            f"concurrency {args.concurrency}): {summary['requests_per_s']} requests/s, "
            f"{summary['good_inputs_per_s']} good inputs/s"
        )
        print(
            f"latency all: p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms; "
            f"good: p50 {summary['good_p50_ms']} ms, p99 {summary['good_p99_ms']} ms"
        )
        for kind, counts in sorted(summary["by_kind"].items()):
            want = 200 if kind == "good" else BAD_KINDS[kind]
            print(f"  {kind:<24} expect {want}: {counts['ok']}/{counts['sent']} as expected")
        print(f"server: {summary['server']}" + (f", exit code {exit_code}" if process is not None else ""))
        for failure in summary["failures"]:
            print("FAIL", failure)
        print("PASSED" if summary["passed"] else "FAILED")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
