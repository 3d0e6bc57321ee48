"""One measurement inside the AdapterHub `adapters` environment (run by `ptuning.experiments.bench.peers`, behind bench/bench_adapters.py).

Standalone on purpose: this file runs under `adapters`' own transformers (4.57.x), where ptuning
(transformers 5) cannot be imported. It builds MiniLM as a sequence classifier, adds the method
("adapters-fine-tune", "adapters-prefix-flat", "adapters-prefix-reparam"), and measures the
median training step (forward, backward, AdamW step, zero_grad) and the peak resident set size
on the same fixed random batch as `ptuning bench` (same seed, same torch), printing one
`BENCH_ROW {json}` line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import traceback


def _peak_rss(stop: threading.Event, box: dict) -> None:
    import psutil

    proc = psutil.Process()
    while not stop.is_set():
        box["peak"] = max(box["peak"], proc.memory_info().rss)
        time.sleep(0.002)


def measure(args: argparse.Namespace) -> dict:
    import adapters
    import psutil
    import torch
    import transformers
    from adapters import PrefixTuningConfig
    from transformers import AutoModelForSequenceClassification

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    row: dict = {
        "method": args.method,
        "adapters": adapters.__version__,
        "transformers": transformers.__version__,
    }
    model = AutoModelForSequenceClassification.from_pretrained(args.backbone, num_labels=2)
    if args.method != "adapters-fine-tune":
        adapters.init(model)
        flat = args.method == "adapters-prefix-flat"
        model.add_adapter("prefix", config=PrefixTuningConfig(prefix_length=args.prefix_len, flat=flat))
        model.train_adapter("prefix")
        model.classifier.requires_grad_(True)  # a trained head, as ptuning's prompt methods have
    gen = torch.Generator().manual_seed(args.seed)  # the batch of worker.measure_method
    batch = {
        "input_ids": torch.randint(1000, 20000, (args.batch_size, args.seq_len), generator=gen),
        "attention_mask": torch.ones(args.batch_size, args.seq_len, dtype=torch.long),
        "labels": torch.randint(0, 2, (args.batch_size,), generator=gen),
    }
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    box = {"peak": psutil.Process().memory_info().rss}
    base = box["peak"]
    stop = threading.Event()
    sampler = threading.Thread(target=_peak_rss, args=(stop, box), daemon=True)
    sampler.start()
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - start))
    stop.set()
    sampler.join()
    row.update(
        status="ok",
        step_ms=statistics.median(times),
        step_ms_all=[round(t, 2) for t in times],
        base_mb=base / 2**20,
        peak_mb=box["peak"] / 2**20,
        train_mb=(box["peak"] - base) / 2**20,
        trainable_params=sum(p.numel() for p in params),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", required=True)
    parser.add_argument("--backbone", required=True)
    for name, default in (
        ("batch-size", 16),
        ("seq-len", 128),
        ("prefix-len", 20),
        ("warmup", 3),
        ("steps", 10),
    ):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        row = measure(args)
    except Exception as exc:
        row = {"method": args.method, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
        row["trace"] = traceback.format_exc()[-1500:]
    print("BENCH_ROW " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
