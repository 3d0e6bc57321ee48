"""Serving benchmark on the real MiniLM backbone (backbone name "minilm").

1. Resident memory, each scenario measured in its own fresh subprocess, one after the other:
     runtime        python + torch + transformers + ptuning imported, no model
     1-fine-tuned   one fine-tuned model (its own backbone + head), after predicting a batch
     8-fine-tuned   eight fine-tuned models, after each predicted a batch
     1-served       one P-Tuning v2 task in MultiTaskPredictor, after a batch
     8-served       eight P-Tuning v2 tasks in one MultiTaskPredictor, after a mixed batch
   Goal: 8-served <= 1.1 x 1-fine-tuned.
2. Throughput of the engine's forward passes (`MultiTaskPredictor.compute`, tokenization excluded)
   on SST-2 dev sentences (or synthetic ones): batches of 32 inputs as 8 requests of 4 inputs, all
   of one task (single-task) or of 8 different tasks (mixed); the same sentences in both. Each
   batch runs in every mode back to back (rotating the order), so the load of other processes on
   a shared machine hits the modes alike; rates are total inputs / total time per mode. Goal:
   mixed >= 0.9 x single-task.
   For reference: `Predictor.logits` (the `ptuning predict` path) on the same single-task batches.
3. Fairness of the micro-batcher: the latency of 1-input requests sent one after another while one
   large request (LARGE_ROWS model rows) runs, against their latency alone, with the batcher's fair
   turns (a large request runs slice by slice, taking turns with the queue) and with whole
   requests (the large one runs to its end first, as the batcher did before). Printed: the small
   requests' median latency over the large request's time, in both modes.

  python bench/bench_serving.py            # about 12 minutes on 2 busy CPU cores
  python bench/bench_serving.py --quick    # fewer batches and rounds, no varied-P run
  python bench/bench_serving.py --fairness-only   # part 3 alone (about a minute)
  python bench/bench_serving.py --device cuda --throughput-only   # on a GPU, bf16 autocast

On CUDA only the throughput part runs (resident memory is a CPU measure), under bf16 autocast, with
the GPU synchronised around each timed batch.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]  # the checkout (src/ptuning/experiments/bench/serving.py)
BACKBONE = "minilm"
NUM_TASKS = 8
BATCH = 32
PER_REQUEST = 4
LARGE_ROWS = 256  # the large request of the fairness part: 8 batches of 32 rows


def sentences(limit: int) -> list[str]:
    """SST-2 dev sentences when the shared data folder is there, else synthetic ones of similar length."""
    candidates = [Path(os.environ.get("PTUNING_DATA", "")) / "glue" / "SST-2" / "dev.tsv"]
    candidates.append(REPO.parent / "shared" / "data" / "glue" / "SST-2" / "dev.tsv")
    for path in candidates:
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()[1:]
            return [line.split("\t")[0].strip() for line in lines[:limit]]
    import random

    rng = random.Random(0)
    words = [
        "the",
        "a",
        "film",
        "movie",
        "is",
        "was",
        "funny",
        "dull",
        "long",
        "short",
        "gripping",
        "story",
        "acting",
        "plot",
        "and",
        "but",
        "not",
        "very",
    ]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) for _ in range(limit)]


def make_checkpoints(folder: Path, *, fine_tune: bool, prefix_lens: list[int] | None = None) -> list[str]:
    """NUM_TASKS classification checkpoints on MiniLM with random prompts/heads (no training needed)."""
    import torch

    from ptuning.core.backbones import load_backbone
    from ptuning.core.config import PromptConfig
    from ptuning.model import PromptModel
    from ptuning.tasks import TaskSpec

    backbone, _ = load_backbone(BACKBONE)
    torch.manual_seed(0)
    paths = []
    for i in range(NUM_TASKS):
        labels = tuple(f"class{j}" for j in range(2 + i % 3))
        spec = TaskSpec(f"task{i}", "classification", labels=labels)
        if fine_tune:
            config = PromptConfig(method="fine-tune")
        else:
            config = PromptConfig(prefix_len=(prefix_lens or [16] * NUM_TASKS)[i], init_std=0.5)
        model = PromptModel(backbone, spec, config, backbone_name=BACKBONE)
        with torch.no_grad():
            for param in model.head.parameters():
                param.normal_(0, 0.2)
        path = folder / f"{'ft' if fine_tune else 'pt'}{i}"
        model.save_pretrained(path)
        paths.append(str(path))
    return paths


# --- memory --------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_worker(scenario: str, config: dict) -> dict:
    import torch

    torch.set_num_threads(2)
    from ptuning.inference import Predictor
    from ptuning.model import PromptModel
    from ptuning.serving import MultiTaskPredictor

    texts = sentences(BATCH)
    keep: list = []
    if scenario.endswith("fine-tuned"):
        count = 1 if scenario.startswith("1") else NUM_TASKS
        for path in config["fine_tuned"][:count]:
            model = PromptModel.from_pretrained(path)
            predictor = Predictor(model, model.tokenizer, batch_size=BATCH)
            predictor.predict(texts)
            keep.append(predictor)
    elif scenario.endswith("served"):
        count = 1 if scenario.startswith("1") else NUM_TASKS
        served = MultiTaskPredictor.from_checkpoints(
            {f"task{i}": p for i, p in enumerate(config["prompts"][:count])}, max_batch_size=BATCH
        )
        served.predict_many([(f"task{i % count}", texts[i::count]) for i in range(count)])
        keep.append(served)
    elif scenario != "runtime":
        raise ValueError(scenario)
    gc.collect()
    return {
        "scenario": scenario,
        "rss_bytes": _rss_bytes(),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def measure_memory(config: dict) -> dict[str, dict]:
    results = {}
    for scenario in ("runtime", "1-fine-tuned", "8-fine-tuned", "1-served", "8-served"):
        command = [
            sys.executable,
            "-m",
            "ptuning.experiments.bench.serving",
            "--memory-worker",
            scenario,
            "--config",
            json.dumps(config),
        ]
        env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"memory worker {scenario} failed:\n{done.stderr[-3000:]}")
        results[scenario] = json.loads(done.stdout.strip().splitlines()[-1])
        mib = results[scenario]["rss_bytes"] / 2**20
        print(
            f"  {scenario:<13} RSS {mib:8.1f} MiB (peak {results[scenario]['peak_rss_bytes'] / 2**20:.1f})",
            flush=True,
        )
    return results


# --- throughput ------------------------------------------------------------------------------------


def measure_throughput(
    prompts: list[str],
    texts: list[str],
    batches: int,
    rounds: int,
    *,
    with_predictor: bool,
    device: str = "cpu",
):
    import contextlib

    import torch

    from ptuning.core.backbones import load_backbone
    from ptuning.inference import Predictor
    from ptuning.serving import MultiTaskPredictor

    if device == "cpu":
        torch.set_num_threads(2)
    model, tokenizer = load_backbone(BACKBONE)
    served = MultiTaskPredictor.from_checkpoints(
        {f"task{i}": p for i, p in enumerate(prompts)},
        backbone=(model.to(device), tokenizer),
        max_batch_size=BATCH,
    )
    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    names = [f"task{i}" for i in range(NUM_TASKS)]
    groups = [texts[(b * BATCH) % len(texts) :][:BATCH] for b in range(batches)]
    groups = [g if len(g) == BATCH else (g + texts)[:BATCH] for g in groups]
    requests_per_batch = BATCH // PER_REQUEST
    single, mixed = [], []
    for b, group in enumerate(groups):
        chunks = [group[k * PER_REQUEST : (k + 1) * PER_REQUEST] for k in range(requests_per_batch)]
        single.append([served.prepare(names[b % NUM_TASKS], chunk) for chunk in chunks])
        mixed.append([served.prepare(names[(b + k) % NUM_TASKS], chunk) for k, chunk in enumerate(chunks)])
    reference = [Predictor(served.task(n).model, served.tokenizer, batch_size=BATCH) for n in names]
    plain = [sum((r.features for r in batch), []) for batch in single]

    def run(mode: str, b: int) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            if mode == "predictor":
                reference[b % NUM_TASKS].logits(plain[b])
            else:
                served.compute(single[b] if mode == "single" else mixed[b])
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    # Side by side: every batch runs in every mode back to back (the order rotating), so that the
    # load of other processes on a shared machine hits all modes alike.
    modes = ["single", "mixed"] + (["predictor"] if with_predictor else [])
    for b in range(min(2, batches)):  # warm-up
        for mode in modes:
            run(mode, b)
    seconds = dict.fromkeys(modes, 0.0)
    pair_ratios = []  # per batch: single-task time / mixed time (= mixed throughput / single)
    step = 0
    for _ in range(rounds):
        for b in range(batches):
            order = modes[step % len(modes) :] + modes[: step % len(modes)]
            step += 1
            took = {mode: run(mode, b) for mode in order}
            for mode, value in took.items():
                seconds[mode] += value
            pair_ratios.append(took["single"] / took["mixed"])
    rates = {mode: rounds * batches * BATCH / seconds[mode] for mode in modes}
    return rates, {"seconds": seconds, "median_batch_ratio": statistics.median(pair_ratios)}


# --- fairness ---------------------------------------------------------------------------------------


def measure_fairness(prompts: list[str], texts: list[str], *, device: str = "cpu", smalls: int = 5) -> dict:
    """Small requests' latency beside one large request, with fair turns and with whole requests."""
    import torch

    from ptuning.core.backbones import load_backbone
    from ptuning.serving import MicroBatcher, MultiTaskPredictor

    class WholeRequests(MicroBatcher):
        """The batcher as it was: a request is never cut, so the large one runs to its end first."""

        def _take(self, job, room, first):
            rest = sum(job.rows_of[job.done :])
            if not first and rest > room:
                return None
            return super()._take(job, max(room, rest), first)

    if device == "cpu":
        torch.set_num_threads(2)
    model, tokenizer = load_backbone(BACKBONE)
    served = MultiTaskPredictor.from_checkpoints(
        {"large": prompts[0], "small": prompts[1]},
        backbone=(model.to(device), tokenizer),
        max_batch_size=BATCH,
    )
    large = (texts * (LARGE_ROWS // len(texts) + 1))[:LARGE_ROWS]
    results: dict = {"large_rows": LARGE_ROWS, "batch": BATCH}
    for mode, kind in (("fair turns", MicroBatcher), ("whole requests", WholeRequests)):
        with kind(served, max_batch_size=BATCH, max_wait_ms=0) as batcher:
            alone = []
            for i in range(smalls):
                start = time.perf_counter()
                batcher.predict("small", [texts[i]])
                alone.append(time.perf_counter() - start)
            start = time.perf_counter()
            future = batcher.submit(served.prepare("large", large))
            beside = []
            while not future.done() and len(beside) < smalls * 4:
                begin = time.perf_counter()
                batcher.predict("small", [texts[len(beside) % len(texts)]])
                beside.append(time.perf_counter() - begin)
            future.result()
            took = time.perf_counter() - start
        results[mode] = {
            "small_alone_s": statistics.median(alone),
            "small_beside_large_s": statistics.median(beside),
            "small_beside_large_max_s": max(beside),
            "smalls_beside_large": len(beside),
            "large_s": took,
            "small_beside / large": statistics.median(beside) / took,
        }
    return results


def print_fairness(fairness: dict) -> None:
    for mode in ("fair turns", "whole requests"):
        m = fairness[mode]
        print(
            f"  {mode:<15} small alone {m['small_alone_s'] * 1000:7.0f} ms, beside the large one "
            f"{m['small_beside_large_s'] * 1000:7.0f} ms (median of {m['smalls_beside_large']}; max "
            f"{m['small_beside_large_max_s'] * 1000:.0f}), large {m['large_s']:.1f} s: "
            f"small / large = {m['small_beside / large']:.3f}",
            flush=True,
        )


def measure_memory_part(folder: Path, prompts: list[str], results: dict) -> None:
    """Resident memory of fine-tuned models against served prompts, each in a fresh subprocess."""
    fine_tuned = make_checkpoints(folder, fine_tune=True)
    sizes = {
        "prompt_checkpoint_bytes": sum(f.stat().st_size for f in Path(prompts[0]).iterdir()),
        "fine_tune_checkpoint_bytes": sum(f.stat().st_size for f in Path(fine_tuned[0]).iterdir()),
    }
    results["checkpoint_sizes"] = sizes

    print("resident memory (each in a fresh subprocess):", flush=True)
    memory = measure_memory({"prompts": prompts, "fine_tuned": fine_tuned})
    rss = {k: v["rss_bytes"] for k, v in memory.items()}
    runtime = rss["runtime"]
    ratios = {
        "8-served / 1-fine-tuned": rss["8-served"] / rss["1-fine-tuned"],
        "8-served / 8-fine-tuned": rss["8-served"] / rss["8-fine-tuned"],
        "8-served / 1-served": rss["8-served"] / rss["1-served"],
        "models only (minus runtime): 8-served / 1-fine-tuned": (rss["8-served"] - runtime)
        / (rss["1-fine-tuned"] - runtime),
        "models only (minus runtime): 8-fine-tuned / 8-served": (rss["8-fine-tuned"] - runtime)
        / (rss["8-served"] - runtime),
    }
    results["memory"] = memory
    results["memory_ratios"] = ratios
    for name, value in ratios.items():
        print(f"  {name:<55} {value:6.3f}", flush=True)
    goal = ratios["8-served / 1-fine-tuned"] <= 1.1
    print(f"  goal 8-served <= 1.1 x 1-fine-tuned: {'met' if goal else 'NOT met'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    global BACKBONE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer batches and rounds; skip the varied-P run"
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--backbone", default=BACKBONE, help=f"backbone name or folder (default: {BACKBONE})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--throughput-only", action="store_true", help="skip the resident-memory part (implied on CUDA)"
    )
    parser.add_argument(
        "--fairness-only",
        action="store_true",
        help="only the fairness part (small requests beside a large one)",
    )
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, json.loads(args.config))))
        return 0

    BACKBONE = args.backbone
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    batches, rounds = (8, 2) if args.quick else (16, 3)
    cuda = args.device.startswith("cuda")
    started = time.perf_counter()
    results: dict = {
        "backbone": BACKBONE,
        "tasks": NUM_TASKS,
        "batch": BATCH,
        "quick": args.quick,
        "device": args.device,
    }
    if cuda:
        import torch

        results["gpu"] = torch.cuda.get_device_name(0)
        results["dtype"] = "bf16 autocast"
    with tempfile.TemporaryDirectory(prefix="ptuning-bench-serving-") as tmp:
        folder = Path(tmp)
        print(
            f"writing {NUM_TASKS} P-Tuning v2 (P=16) checkpoints of {BACKBONE} (and as many fine-tuned ones for "
            "the memory part) ...",
            flush=True,
        )
        prompts = make_checkpoints(folder, fine_tune=False)
        texts = sentences(872)
        print(
            f"fairness: 1-input requests, one after another, while one request of {LARGE_ROWS} rows runs "
            f"(batches of {BATCH} rows):",
            flush=True,
        )
        results["fairness"] = measure_fairness(prompts, texts, device=args.device)
        print_fairness(results["fairness"])
        if args.fairness_only:
            return _finish(results, started, argv, args.json)
        if not (args.throughput_only or cuda):
            measure_memory_part(folder, prompts, results)

        print(
            f"throughput of forward passes: {batches} batches of {BATCH} inputs ({BATCH // PER_REQUEST} requests "
            f"of {PER_REQUEST}), {rounds} rounds, every batch in every mode side by side:",
            flush=True,
        )
        medians, raw = measure_throughput(
            prompts, texts, batches, rounds, with_predictor=True, device=args.device
        )
        ratio = medians["mixed"] / medians["single"]
        results["throughput"] = {
            "inputs_per_s": medians,
            "detail": raw,
            "mixed / single": ratio,
            "single / predictor": medians["single"] / medians["predictor"],
        }
        print(f"  single-task batches      {medians['single']:8.1f} inputs/s")
        print(f"  mixed-task batches (8)   {medians['mixed']:8.1f} inputs/s")
        print(f"  Predictor (ptuning predict path, single task) {medians['predictor']:8.1f} inputs/s")
        print(
            f"  mixed / single = {ratio:.3f} (median over batches {raw['median_batch_ratio']:.3f}; "
            f"goal >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})",
            flush=True,
        )
        if not args.quick:
            lens = [4, 8, 12, 16, 20, 24, 28, 32]
            varied_dir = folder / "varied"
            varied_dir.mkdir()
            varied = make_checkpoints(varied_dir, fine_tune=False, prefix_lens=lens)
            medians_v, raw_v = measure_throughput(
                varied, texts, batches, rounds, with_predictor=False, device=args.device
            )
            ratio_v = medians_v["mixed"] / medians_v["single"]
            results["throughput_varied_prefix"] = {
                "prefix_lens": lens,
                "inputs_per_s": medians_v,
                "detail": raw_v,
                "mixed / single": ratio_v,
            }
            print(f"  with P = {lens} (mixed batches pad every prefix to 32):")
            print(
                f"    single {medians_v['single']:.1f}, mixed {medians_v['mixed']:.1f} inputs/s: ratio {ratio_v:.3f}"
            )
    return _finish(results, started, argv, args.json)


def _finish(results: dict, started: float, argv: list[str] | None, json_path: str | None) -> int:
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["command"] = "python " + " ".join(["bench/bench_serving.py", *(argv or sys.argv[1:])])
    print(f"done in {results['seconds']} s")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
