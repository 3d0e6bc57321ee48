"""Speed and memory of each method, side by side: what `ptuning bench` measures.

Every method runs in a fresh Python process (`python -m ptuning.benchmark --worker JSON`), so its
peak memory is its own and no method warms a cache for another. A worker builds the model on a
fixed random batch (batch size x sequence length, every token real) and measures:

* ``step_ms``: median wall time of a training step (forward, backward, AdamW step, zero_grad)
  after `warmup` steps, over `steps` steps;
* ``peak_mb``: peak memory while training. CPU: the process's resident set size (RSS), sampled
  every 2 ms by a thread during the warm-up and measured steps (``base_mb`` is the RSS just before
  the first step, after the imports and the model; ``train_mb`` = peak - base is what training
  adds). CUDA: ``torch.cuda.max_memory_allocated`` (``base_mb``: allocated before the first step);
* ``trainable_params`` and ``checkpoint_bytes`` (what `save_pretrained` writes: prompt + head, or
  every weight for fine-tuning; PEFT: its adapter files);
* ``infer_ms``: median eval-mode forward latency of the same batch with the method's prompt, and
  ``infer_plain_ms``: the same model with no prompt at all (the frozen backbone + head).

The step and inference run under bf16 autocast where `ptuning.precision` says so (a GPU, a CPU with
native bf16; `bf16` True/False forces the choice). Rows of PEFT methods that fail record the
exception text as their result. `run_bench` runs all methods `repeats` times round-robin (so slow
drifts of a shared machine hit every method alike) and reports the median over repeats, and the
ratio of each method to fine-tuning measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# name -> (kind, options). kind "ours" builds a PromptModel; "peft" wraps a HF sequence classifier;
# "handcrafted" is a template + verbalizer (nothing trains: inference and checkpoint size only).
METHOD_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "fine-tune": ("ours", {"method": "fine-tune"}),
    "p-tuning-v2": ("ours", {"method": "p-tuning-v2"}),
    "p-tuning-v2+reparam": ("ours", {"method": "p-tuning-v2", "prefix_projection": True}),
    "prefix-tuning": ("ours", {"method": "prefix-tuning"}),
    "prompt-tuning": ("ours", {"method": "prompt-tuning"}),
    "peft-prefix-tuning": ("peft", {"peft_type": "prefix"}),
    "peft-prompt-tuning": ("peft", {"peft_type": "prompt"}),
    "handcrafted": ("handcrafted", {}),
}
ALL_METHODS = tuple(METHOD_SPECS)

# Targets of the issues, as ratios against fine-tuning (inference: against the plain backbone) in the same run.
TARGETS = {
    "step_time": ("p-tuning-v2", 0.70),
    "peak_memory": ("p-tuning-v2", 0.75),
    "inference_prefix_overhead": ("p-tuning-v2", 1.05),
}
# Where a backbone has targets of its own: the memory advantage grows with the frozen model.
BACKBONE_TARGETS = {"mpnet-base": {"peak_memory": ("p-tuning-v2", 0.60)}}


@dataclass
class BenchConfig:
    backbone: str = "minilm"
    batch_size: int = 16
    seq_len: int = 128
    prefix_len: int = 20
    warmup: int = 3
    steps: int = 10
    infer_reps: int = 10
    repeats: int = 1
    methods: tuple[str, ...] = ALL_METHODS
    device: str = "auto"  # auto, cpu, cuda
    threads: int | None = None  # torch CPU threads (None: torch's default)
    bf16: bool | None = None  # bf16 autocast: True, False, None (ptuning.precision's default)
    num_labels: int = 2
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


QUICK = {"batch_size": 4, "seq_len": 32, "warmup": 1, "steps": 2, "infer_reps": 2, "repeats": 1}


# --- the worker (one method, one process) -----------------------------------------------------


class _RssSampler:
    """Peak resident set size of this process, sampled by a background thread."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def current(self) -> int:
        return self._proc.memory_info().rss

    def __enter__(self) -> _RssSampler:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def _build_ours(cfg: BenchConfig, options: dict[str, Any]):
    from .backbones import load_backbone
    from .config import PromptConfig
    from .data.spec import TaskSpec
    from .modeling import PromptModel

    backbone, _ = load_backbone(cfg.backbone)
    spec = TaskSpec("bench", "classification", tuple(f"l{i}" for i in range(cfg.num_labels)), "accuracy")
    model = PromptModel(
        backbone, spec, PromptConfig(prefix_len=cfg.prefix_len, **options), backbone_name=cfg.backbone
    )
    trainable = model.count_parameters().trainable

    def save(folder: str) -> int:
        return int(model.save_pretrained(folder)["checkpoint_bytes"])

    def plain_forward(batch):  # the same backbone + head, no prompt
        hidden = model.backbone(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        return model.head(hidden, batch["attention_mask"], None)

    return model, trainable, save, plain_forward


def _build_peft(cfg: BenchConfig, options: dict[str, Any]):
    from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from .backbones import resolve

    base = AutoModelForSequenceClassification.from_pretrained(
        resolve(cfg.backbone), num_labels=cfg.num_labels, attn_implementation="sdpa"
    )
    if options["peft_type"] == "prefix":
        peft_config = PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=cfg.prefix_len)
    else:
        peft_config = PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=cfg.prefix_len)
    model = get_peft_model(base, peft_config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def save(folder: str) -> int:
        model.save_pretrained(folder)
        return sum(p.stat().st_size for p in Path(folder).rglob("*.safetensors"))

    def plain_forward(batch):  # the wrapped model itself (PEFT's disable_adapter fails on BERT)
        return model.get_base_model()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    return model, trainable, save, plain_forward


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], Any], reps: int, device: str) -> tuple[float, list[float]]:
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), times


def _measure_handcrafted(cfg: BenchConfig, device: str) -> dict[str, Any]:
    """A template + verbalizer: nothing trains (step 0 ms, 0 parameters; the few-shot label bias is
    fitted in closed form, not by steps). Inference: the scorer on the batch, each row ending in the
    mask token, against the plain backbone's forward pass; the checkpoint is its JSON file."""
    import torch

    from .data.spec import TaskSpec
    from .handcrafted import HandcraftedScorer, Template, Verbalizer, save_handcrafted

    labels = tuple(f"l{i}" for i in range(cfg.num_labels))
    words = ("terrible", "great", "okay", "bad", "good", "fine", "awful", "nice")
    spec = TaskSpec("bench", "classification", labels, "accuracy")
    verbalizer = Verbalizer(
        tuple((label, (words[i] if i < len(words) else f"word{i}",)) for i, label in enumerate(labels))
    )
    scorer = HandcraftedScorer.from_backbone(
        cfg.backbone, spec, Template.parse("{text} It was {mask}."), verbalizer, max_length=cfg.seq_len
    )
    scorer.model.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(1000, 20000, (cfg.batch_size, cfg.seq_len), generator=gen)
    ids[:, -2] = scorer.tokenizer.mask_token_id if scorer.tokenizer.mask_token_id is not None else ids[:, -2]
    features = [{"input_ids": row.tolist(), "attention_mask": [1] * cfg.seq_len} for row in ids]
    batch = scorer._batch(features)
    encoder = scorer.model.base_model if scorer.scoring == "mlm" else scorer.model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    with _RssSampler() as sampler, torch.inference_mode(), autocast:
        base = sampler.current()
        for _ in range(2):
            scorer._score_batch(features)
            encoder(**batch)
        with_prompt, plain = [], []
        for _ in range(cfg.infer_reps):
            with_prompt.append(_median_ms(lambda: scorer._score_batch(features), 1, device)[0])
            plain.append(_median_ms(lambda: encoder(**batch), 1, device)[0])
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_handcrafted(scorer, tmp)["checkpoint_bytes"]
    infer_ms, plain_ms = statistics.median(with_prompt), statistics.median(plain)
    return {
        "status": "ok",
        "scoring": scorer.scoring,
        "step_ms": 0.0,
        "step_ms_all": [],
        "base_mb": base / 2**20,
        "peak_mb": sampler.peak / 2**20,
        "train_mb": 0.0,
        "trainable_params": 0,
        "infer_ms": infer_ms,
        "infer_plain_ms": plain_ms,
        "infer_ratio": infer_ms / plain_ms,
        "checkpoint_bytes": checkpoint,
    }


def measure_method(cfg: BenchConfig, name: str) -> dict[str, Any]:
    """Measure one method in this process (the worker's body). Errors become the row's result."""
    import torch

    row: dict[str, Any] = {"method": name}
    device = cfg.resolved_device()
    if cfg.threads and device == "cpu":
        torch.set_num_threads(cfg.threads)
    kind, options = METHOD_SPECS[name]
    if kind == "handcrafted":
        try:
            row.update(_measure_handcrafted(cfg, device))
        except Exception as exc:
            row.update(
                status="error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-1500:]
            )
        return row
    try:
        torch.manual_seed(cfg.seed)
        build = _build_ours if kind == "ours" else _build_peft
        model, trainable, save, plain_forward = build(cfg, options)
        model.to(device)
        gen = torch.Generator().manual_seed(cfg.seed)
        batch = {
            "input_ids": torch.randint(1000, 20000, (cfg.batch_size, cfg.seq_len), generator=gen),
            "attention_mask": torch.ones(cfg.batch_size, cfg.seq_len, dtype=torch.long),
            "labels": torch.randint(0, cfg.num_labels, (cfg.batch_size,), generator=gen),
        }
        batch = {k: v.to(device) for k, v in batch.items()}
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        from .precision import resolve_precision

        autocast = resolve_precision(cfg.bf16, device).autocast()

        def step() -> None:
            with autocast:
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        model.train()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            for _ in range(cfg.warmup):
                step()
            step_ms, step_all = _median_ms(step, cfg.steps, device)
            peak = torch.cuda.max_memory_allocated()
        else:
            with _RssSampler() as sampler:
                base = sampler.current()
                for _ in range(cfg.warmup):
                    step()
                step_ms, step_all = _median_ms(step, cfg.steps, device)
            peak = sampler.peak
        row.update(
            status="ok",
            step_ms=step_ms,
            step_ms_all=[round(t, 2) for t in step_all],
            base_mb=base / 2**20,
            peak_mb=peak / 2**20,
            train_mb=(peak - base) / 2**20,
            trainable_params=trainable,
        )
        model.eval()
        inference_batch = {k: v for k, v in batch.items() if k != "labels"}
        with torch.inference_mode(), autocast:
            for _ in range(2):
                model(**inference_batch)
                plain_forward(inference_batch)
            # interleave the two so load changes hit both alike
            with_prompt, plain = [], []
            for _ in range(cfg.infer_reps):
                with_prompt.append(_median_ms(lambda: model(**inference_batch), 1, device)[0])
                plain.append(_median_ms(lambda: plain_forward(inference_batch), 1, device)[0])
        row.update(
            infer_ms=statistics.median(with_prompt),
            infer_plain_ms=statistics.median(plain),
        )
        row["infer_ratio"] = row["infer_ms"] / row["infer_plain_ms"]
        with tempfile.TemporaryDirectory() as tmp:
            row["checkpoint_bytes"] = save(tmp)
    except Exception as exc:
        row.update(status="error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-1500:])
    return row


def _worker_main(payload: str) -> int:
    data = json.loads(payload)
    cfg = BenchConfig(**{**data["config"], "methods": tuple(data["config"]["methods"])})
    row = measure_method(cfg, data["method"])
    print("BENCH_ROW " + json.dumps(row), flush=True)
    return 0


# --- the driver -------------------------------------------------------------------------------


def run_worker(cfg: BenchConfig, method: str, timeout: float | None = None) -> dict[str, Any]:
    payload = json.dumps({"config": asdict(cfg), "method": method})
    env = dict(os.environ)
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["TQDM_DISABLE"] = "1"
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ptuning.benchmark", "--worker", payload],
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


NUMERIC = ("step_ms", "peak_mb", "base_mb", "train_mb", "infer_ms", "infer_plain_ms", "infer_ratio")


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repeats of each numeric field; the first error if no repeat succeeded."""
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return runs[0]
    row = dict(ok[0])
    for key in NUMERIC:
        row[key] = statistics.median(r[key] for r in ok)
    row["repeats"] = len(ok)
    row["step_ms_by_repeat"] = [round(r["step_ms"], 2) for r in ok]
    row.pop("step_ms_all", None)
    return row


def ratios(rows: dict[str, dict[str, Any]], per_repeat: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each method against fine-tuning measured in the same run.

    The step-time ratio is the median over repeats of the per-repeat ratio (both measured back to
    back), which cancels slow drifts of a shared machine better than a ratio of medians."""
    ft = rows.get("fine-tune")
    if not ft or ft.get("status") != "ok":
        return {}
    out = {}
    for name, row in rows.items():
        if row.get("status") != "ok":
            continue
        pairs = [
            a["step_ms"] / b["step_ms"]
            for a, b in zip(per_repeat[name], per_repeat["fine-tune"], strict=False)
            if a.get("status") == "ok" and b.get("status") == "ok"
        ]
        out[name] = {
            "step_time": statistics.median(pairs) if pairs else row["step_ms"] / ft["step_ms"],
            "peak_memory": row["peak_mb"] / ft["peak_mb"],
            "train_memory": row["train_mb"] / ft["train_mb"] if ft["train_mb"] > 0 else None,
            "trainable_params": row["trainable_params"] / ft["trainable_params"],
            "checkpoint_bytes": row["checkpoint_bytes"] / ft["checkpoint_bytes"],
            "inference_prefix_overhead": row["infer_ratio"],
        }
    return out


def check_targets(ratio_table: dict[str, Any], backbone: str = "minilm") -> dict[str, Any]:
    out = {}
    for key, (method, limit) in {**TARGETS, **BACKBONE_TARGETS.get(backbone, {})}.items():
        value = ratio_table.get(method, {}).get(key)
        out[key] = {
            "method": method,
            "limit": limit,
            "value": value,
            "met": None if value is None else value <= limit,
        }
    return out


def environment(cfg: BenchConfig) -> dict[str, Any]:
    import platform

    import torch
    import transformers

    from .precision import resolve_precision

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
        "targets": check_targets(ratio_table, cfg.backbone),
    }


def format_table(result: dict[str, Any]) -> str:
    cfg = result["config"]
    env = result["environment"]
    ratio_table = result["ratios_vs_fine_tune"]
    head = (
        f"backbone {cfg['backbone']}, batch {cfg['batch_size']}, {cfg['seq_len']} tokens, P = {cfg['prefix_len']}, "
        f"{env['device']} ({env['dtype']}), {cfg['repeats']} repeat(s), {cfg['steps']} steps after "
        f"{cfg['warmup']} warm-up"
    )
    lines = [head, ""]
    header = (
        "| method | step ms | x FT | peak MB | x FT | train MB | trainable | ckpt bytes | "
        "infer ms | plain ms | infer ratio |"
    )
    lines += [header, "|---" * 11 + "|"]
    for row in result["rows"]:
        name = row["method"]
        if row.get("status") != "ok":
            lines.append(f"| {name} | error: {row['error'][:120]} |" + " |" * 9)
            continue
        r = ratio_table.get(name, {})
        lines.append(
            f"| {name} | {row['step_ms']:.0f} | {r.get('step_time', float('nan')):.2f} | {row['peak_mb']:.0f} | "
            f"{r.get('peak_memory', float('nan')):.2f} | {row['train_mb']:.0f} | {row['trainable_params']:,} | "
            f"{row['checkpoint_bytes']:,} | {row['infer_ms']:.1f} | {row['infer_plain_ms']:.1f} | "
            f"{row['infer_ratio']:.3f} |"
        )
    lines.append("")
    for key, t in result["targets"].items():
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"target {key} ({t['method']}) <= {t['limit']}: {value} -> {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptuning.benchmark")
    parser.add_argument("--worker", required=True, help="JSON payload (internal)")
    args = parser.parse_args(argv)
    return _worker_main(args.worker)


if __name__ == "__main__":
    sys.exit(main())
