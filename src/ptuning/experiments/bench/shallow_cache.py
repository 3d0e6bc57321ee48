"""Epoch time of P-Tuning v2 with the shallow cache, against fine-tuning, on real SST-2 batches.

Side by side in one process, round-robin over `--repeats` so a shared machine's drifts hit every
variant alike, each variant training one epoch over the same features (AdamW, train mode):

  fine-tune            every weight trains
  ptv2-all             P-Tuning v2, prompts in all L layers
  ptv2-top-k           P-Tuning v2, prompts in the top k layers, uncached
  ptv2-top-k-cached    the same with ptuning.core.shallow_cache (build time reported separately)

and, with --accuracy, trains `ptuning.training.run.train` on an SST-2 subset with and without the cache
(same seeds) to report its effect on dev accuracy (the cached path has no dropout in the lower
layers; otherwise it is the same computation).

  OMP_NUM_THREADS=1 python bench/bench_shallow_cache.py --repeats 3 --accuracy
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _features(n: int, max_len: int):
    from ptuning.core.backbones import load_backbone
    from ptuning.data import encode, load_task, make_collator, subsample

    data = load_task("sst2")
    _, tokenizer = load_backbone("minilm")
    # long enough sentences that a batch is ~max_len tokens: the setting of the step-time targets
    examples = [ex for ex in data.train if len(ex["text"].split()) >= 12]
    features = encode(data.spec, subsample(examples, n, 0), tokenizer, max_len)
    return data.spec, features, make_collator(data.spec, tokenizer)


def _model(spec, method: str, prompt_layers: int | None, prefix_len: int):
    from ptuning.core.backbones import load_backbone
    from ptuning.core.config import PromptConfig
    from ptuning.model import PromptModel

    torch.manual_seed(0)
    backbone, _ = load_backbone("minilm")
    return PromptModel(
        backbone, spec, PromptConfig(method=method, prefix_len=prefix_len, prompt_layers=prompt_layers)
    )


def epoch_seconds(model, batches) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    start = time.perf_counter()
    for batch in batches:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def timing(args) -> dict:
    from ptuning.core.shallow_cache import attach_shallow_cache

    spec, features, collate = _features(args.examples, args.max_len)
    batches = [collate(features[i : i + args.batch_size]) for i in range(0, len(features), args.batch_size)]
    k = args.top
    variants = {
        "fine-tune": ("fine-tune", None, False),
        "ptv2-all": ("p-tuning-v2", None, False),
        f"ptv2-top-{k}": ("p-tuning-v2", k, False),
        f"ptv2-top-{k}-cached": ("p-tuning-v2", k, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    build: list[float] = []
    cache_info = {}
    for repeat in range(args.repeats):
        for name, (method, layers, cached) in variants.items():
            model = _model(spec, method, layers, args.prefix_len)
            if cached:
                cache = attach_shallow_cache(model, features, collate, batch_size=64)
                build.append(cache.build_seconds)
                cache_info = cache.summary()
            seconds = epoch_seconds(model, batches)
            times[name].append(seconds)
            print(f"[{repeat + 1}/{args.repeats}] {name}: epoch {seconds:.1f} s", flush=True)
    med = {name: statistics.median(v) for name, v in times.items()}
    ft = med["fine-tune"]
    # the ratio per repeat (variants measured back to back), then the median
    per_repeat = {
        name: statistics.median(a / b for a, b in zip(v, times["fine-tune"], strict=True))
        for name, v in times.items()
    }
    cached_name = f"ptv2-top-{k}-cached"
    build_med = statistics.median(build)
    return {
        "setting": {
            "backbone": "minilm",
            "task": "sst2 (sentences of >= 12 words)",
            "examples": len(features),
            "batch_size": args.batch_size,
            "max_len": args.max_len,
            "mean_tokens": statistics.fmean(len(f["input_ids"]) for f in features),
            "prefix_len": args.prefix_len,
            "top_layers": k,
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(),
        },
        "epoch_seconds": med,
        "epoch_seconds_all": times,
        "ratio_vs_fine_tune": per_repeat,
        "cache": {**cache_info, "build_seconds_median": build_med},
        "amortized_ratio_vs_fine_tune": {
            str(epochs): (build_med + epochs * med[cached_name]) / (epochs * ft) for epochs in (1, 3, 10, 30)
        },
        "target": {"limit": 0.35, "value": per_repeat[cached_name], "met": per_repeat[cached_name] <= 0.35},
    }


def accuracy(args) -> dict:
    import tempfile

    from ptuning.training.config import TrainConfig
    from ptuning.training.run import train

    out = {}
    k = args.top
    variants = {
        f"ptv2-top-{k}": dict(method="p-tuning-v2", prompt_layers=k, cache_shallow_layers=False),
        f"ptv2-top-{k}-cached": dict(method="p-tuning-v2", prompt_layers=k, cache_shallow_layers=True),
    }
    for seed in args.seeds:
        for name, options in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                cfg = TrainConfig.build(
                    task="sst2",
                    prefix_len=args.prefix_len,
                    epochs=args.acc_epochs,
                    batch_size=16,
                    max_seq_length=48,
                    pooling="mean",
                    max_train_samples=args.acc_train,
                    max_eval_samples=args.acc_eval,
                    seed=seed,
                    output_dir=tmp,
                    progress=False,
                    logging_steps=1000,
                    **options,
                )
                metrics = train(cfg)
            out.setdefault(name, []).append(
                {
                    "seed": seed,
                    "accuracy": metrics["validation"]["accuracy"],
                    "train_seconds": metrics["train_seconds"],
                    "shallow_cache": metrics.get("shallow_cache"),
                }
            )
            print(f"seed {seed} {name}: accuracy {metrics['validation']['accuracy']:.4f}", flush=True)
    summary = {
        name: {
            "mean_accuracy": statistics.fmean(r["accuracy"] for r in rows),
            "mean_train_seconds": statistics.fmean(r["train_seconds"] for r in rows),
        }
        for name, rows in out.items()
    }
    return {
        "setting": {
            "train": args.acc_train,
            "eval": args.acc_eval,
            "epochs": args.acc_epochs,
            "seeds": args.seeds,
            "pooling": "mean",
            "note": "train_seconds includes per-epoch evaluation and checkpointing, not the cache build",
        },
        "runs": out,
        "summary": summary,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--prefix-len", type=int, default=20)
    parser.add_argument("--top", type=int, default=3, help="k, prompted top layers (default: 3 = L/2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true", help="also train with/without the cache")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--acc-train", type=int, default=300)
    parser.add_argument("--acc-eval", type=int, default=300)
    parser.add_argument("--acc-epochs", type=float, default=3)
    parser.add_argument("--output", default="bench/results/shallow_cache.json")
    args = parser.parse_args()

    result = {"timing": timing(args)}
    t = result["timing"]
    print(json.dumps({k: t[k] for k in ("epoch_seconds", "ratio_vs_fine_tune", "target")}, indent=2))
    if args.accuracy:
        result["accuracy"] = accuracy(args)
        print(json.dumps(result["accuracy"]["summary"], indent=2))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
