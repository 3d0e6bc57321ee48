"""One method measured in this process: step time, peak memory, size, inference latency
(`python -m ptuning.experiments.bench.worker --worker JSON`, started by `ptuning.experiments.bench.driver.run_worker`)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .config import METHOD_SPECS, BenchConfig
from .peers import _build_peft


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
    from ...core.backbones import load_backbone
    from ...core.checkpointing import set_activation_checkpointing
    from ...core.config import PromptConfig
    from ...model import PromptModel
    from ...tasks import TaskSpec

    options = dict(options)
    checkpointing = options.pop("activation_checkpointing", False)  # a training setting, not the model's
    backbone, _ = load_backbone(cfg.backbone)
    spec = TaskSpec("bench", "classification", tuple(f"l{i}" for i in range(cfg.num_labels)), "accuracy")
    model = PromptModel(
        backbone, spec, PromptConfig(prefix_len=cfg.prefix_len, **options), backbone_name=cfg.backbone
    )
    if checkpointing:
        set_activation_checkpointing(model.backbone)
    trainable = model.count_parameters().trainable

    def save(folder: str) -> int:
        return int(model.save_pretrained(folder)["checkpoint_bytes"])

    def plain_forward(batch):  # the same backbone + head, no prompt
        hidden = model.backbone(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        return model.head(hidden, batch["attention_mask"], None)

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

    from ...handcrafted import HandcraftedScorer, Template, Verbalizer, save_handcrafted
    from ...tasks import TaskSpec

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
        from ...core.precision import resolve_precision

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptuning.experiments.bench.worker")
    parser.add_argument("--worker", required=True, help="JSON payload (internal)")
    args = parser.parse_args(argv)
    return _worker_main(args.worker)


if __name__ == "__main__":
    sys.exit(main())
