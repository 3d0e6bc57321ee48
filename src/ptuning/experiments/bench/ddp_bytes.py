"""What DDP sends per optimizer step: P-Tuning v2 (frozen backbone) against full fine-tuning.

Starts WORLD processes on the CPU (gloo), wraps a PromptModel in DistributedDataParallel with the
settings `ptuning train` uses under torchrun (broadcast_buffers=False; find_unused_parameters only
for fine-tune, whose backbone pooler gets no gradient),
and runs a few training steps on random token batches. A communication hook sees every gradient
bucket DDP all-reduces; it records the bucket's bytes and which parameters it holds, then does the
ordinary all-reduce. Printed per method:

  registered   parameters DDP's reducer holds (those with requires_grad), count and bytes
  frozen       parameters left out of the reducer (the frozen backbone)
  payload      bytes all-reduced per optimizer step, measured in the hook (= sum numel*element_size of
               the registered gradients)
  on the wire  what a ring all-reduce moves per rank: 2 * (WORLD - 1) / WORLD * payload

Run:  python bench/bench_ddp_bytes.py                       (MiniLM, P=16, 2 processes)
      python bench/bench_ddp_bytes.py --backbone PATH --prefix-len 32 --world 4
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, method: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from ptuning.core.config import PromptConfig
        from ptuning.data import get_task_spec
        from ptuning.model import PromptModel

        torch.manual_seed(0)
        config = PromptConfig(method=method, prefix_len=args.prefix_len)
        model, _ = PromptModel.from_backbone(args.backbone, get_task_spec("sst2"), config)
        model.train()
        named = dict(model.named_parameters())
        name_of = {id(p): n for n, p in named.items()}
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
        ddp = DistributedDataParallel(
            model, find_unused_parameters=not config.freezes_backbone, broadcast_buffers=False
        )

        seen: dict = {"bytes": 0, "buckets": 0, "params": set()}

        def counting_hook(state, bucket):
            buffer = bucket.buffer()
            seen["bytes"] += buffer.numel() * buffer.element_size()
            seen["buckets"] += 1
            seen["params"].update(name_of[id(p)] for p in bucket.parameters())
            return default_hooks.allreduce_hook(state, bucket)

        ddp.register_comm_hook(dist.group.WORLD, counting_hook)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        vocab = model.backbone.config.vocab_size
        generator = torch.Generator().manual_seed(rank)
        for _ in range(args.steps):
            ids = torch.randint(1000, vocab, (args.batch, args.seq_len), generator=generator)
            labels = torch.randint(0, 2, (args.batch,), generator=generator)
            loss = ddp(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        registered = [p for p in model.parameters() if p.requires_grad]
        frozen = [p for p in model.parameters() if not p.requires_grad]
        logging_data = ddp._get_ddp_logging_data()
        if rank == 0:
            result = {
                "method": method,
                "registered_params": sum(p.numel() for p in registered),
                "registered_tensors": len(registered),
                "registered_bytes": sum(p.numel() * p.element_size() for p in registered),
                "frozen_params": sum(p.numel() for p in frozen),
                "reducer_bytes": logging_data.get("total_parameter_size_bytes"),
                "reducer_tensors": logging_data.get("num_parameter_tensors"),
                "buckets_per_step": seen["buckets"] / args.steps,
                "payload_bytes_per_step": seen["bytes"] / args.steps,
                "backbone_params_in_buckets": sorted(n for n in seen["params"] if n.startswith("backbone.")),
                "params_in_buckets": len(seen["params"]),
                "buffer_bytes": sum(b.numel() * b.element_size() for b in model.buffers()),
            }
            with open(out, "w") as handle:
                json.dump(result, handle)
    finally:
        dist.destroy_process_group()


def measure(args: argparse.Namespace, method: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(_worker, args=(args.world, _free_port(), args, method, out), nprocs=args.world, join=True)
        with open(out) as handle:
            return json.load(handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="minilm", help="minilm, mpnet-base or a model folder")
    parser.add_argument("--prefix-len", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=["p-tuning-v2", "fine-tune"])
    parser.add_argument("--world", type=int, default=2, help="processes (default: 2)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="per process")
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = parser.parse_args(argv)

    results = [measure(args, method) for method in args.methods]
    wire = 2 * (args.world - 1) / args.world
    print(f"backbone {args.backbone}, prefix_len {args.prefix_len}, {args.world} processes (gloo, CPU)")
    header = (
        f"{'method':<14}{'registered params':>18}{'frozen params':>15}{'buckets':>9}"
        f"{'payload B/step':>16}{'wire B/step/rank':>18}  backbone in buckets"
    )
    print(header)
    for r in results:
        print(
            f"{r['method']:<14}{r['registered_params']:>18,}{r['frozen_params']:>15,}"
            f"{r['buckets_per_step']:>9.0f}{r['payload_bytes_per_step']:>16,.0f}"
            f"{wire * r['payload_bytes_per_step']:>18,.0f}  "
            f"{len(r['backbone_params_in_buckets'])} tensors"
        )
        print(
            f"  buffers {r['buffer_bytes']:,} B (position ids): not broadcast per step, as "
            "ptuning train passes broadcast_buffers=False"
        )
        if r["payload_bytes_per_step"] != r["registered_bytes"]:
            print(f"  note: payload differs from the registered gradient bytes ({r['registered_bytes']:,})")
    if len(results) >= 2:
        base, other = results[0], results[1]
        ratio = other["payload_bytes_per_step"] / base["payload_bytes_per_step"]
        print(f"{other['method']} sends {ratio:,.1f}x the bytes of {base['method']} per step")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
