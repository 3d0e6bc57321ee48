"""`ptuning bench`'s driver: every method in a fresh process, round-robin over repeats."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .config import BenchConfig
from .report import _combine, check_targets, ratios


def run_worker(cfg: BenchConfig, method: str, timeout: float | None = None) -> dict[str, Any]:
    payload = json.dumps({"config": asdict(cfg), "method": method})
    env = dict(os.environ)
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["TQDM_DISABLE"] = "1"
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ptuning.experiments.bench.worker", "--worker", payload],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"method": method, "status": "error", "error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_ROW "):
            row = json.loads(line[len("BENCH_ROW ") :])
            row["process_seconds"] = round(time.perf_counter() - start, 2)
            return row
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {
        "method": method,
        "status": "error",
        "error": f"worker exited {proc.returncode}: {' | '.join(tail)}",
    }


def environment(cfg: BenchConfig) -> dict[str, Any]:
    import platform

    import torch
    import transformers

    from ...core.precision import resolve_precision

    device = cfg.resolved_device()
    info = {
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": cfg.threads or torch.get_num_threads(),
        "dtype": resolve_precision(cfg.bf16, device).name,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    with contextlib.suppress(OSError):
        info["loadavg_start"] = os.getloadavg()
    return info


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    env = environment(cfg)
    per_repeat: dict[str, list[dict[str, Any]]] = {m: [] for m in cfg.methods}
    started = time.perf_counter()
    for repeat in range(cfg.repeats):
        for method in cfg.methods:
            row = run_worker(cfg, method)
            per_repeat[method].append(row)
            if row.get("status") == "ok":
                log(
                    f"[{repeat + 1}/{cfg.repeats}] {method}: step {row['step_ms']:.0f} ms, "
                    f"peak {row['peak_mb']:.0f} MB, infer {row['infer_ms']:.0f} ms"
                )
            else:
                log(f"[{repeat + 1}/{cfg.repeats}] {method}: {row['error'][:160]}")
    rows = {m: _combine(runs) for m, runs in per_repeat.items()}
    ratio_table = ratios(rows, per_repeat)
    with contextlib.suppress(OSError):
        env["loadavg_end"] = os.getloadavg()
    return {
        "config": asdict(cfg),
        "environment": env,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": list(rows.values()),
        "ratios_vs_fine_tune": ratio_table,
        "targets": check_targets(ratio_table, cfg.backbone, env["dtype"]),
    }
