"""Data-parallel training under torchrun: 2 CPU processes (gloo) with the tiny BERT.

One 2-process run (per-device batch 2, --grad-accum 2: global batch 8) is compared with one
single-process run with batch 8 and the same seed; the length-grouped sampler draws one order
over the global batch, so each optimizer step sees the same 8 examples in both runs. Dropout is
off in both (per-rank dropout masks cannot match a single process's). Measured here: the ranks
agree bit for bit, and after 8 steps DDP differs from the single process by at most 4.8e-7 (2 float32
ulps at |x| = 2: a mean of two half-batch means against one mean, then Adam); we assert
|ddp - single| <= 1e-6 + 1e-6 * |single| (about 8 ulps), while the parameters move by 1e-3 to 1e-2
between checkpoints, and a run that skips the gradient all-reduce misses by 7e-3.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TRAIN = 64  # 8 optimizer steps of 8 examples
EVAL = 50  # per-device eval batch 8 on 2 ranks: the last global batch holds 2 real examples of 16
ATOL, RTOL = 1e-6, 1e-6  # DDP against one process: a few float32 ulps

# The same as `python -m ptuning ...`, plus: every rank saves its trainable parameters after the
# last optimizer step (before the best checkpoint is reloaded) to $DUMP/rank<k>.safetensors, and
# what DDP registered and all-reduced (counted by a comm hook on the Trainer's own DDP wrapper)
# to $DUMP/rank<k>.json.
OBSERVER = """
import json, os, runpy, sys
from safetensors.torch import save_file
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from transformers import TrainerCallback
import ptuning.training.run as training

class Dump(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.hooked, self.sent = trainer, False, 0

    def count(self, state, bucket):  # every gradient bucket DDP all-reduces passes through here
        self.sent += bucket.buffer().numel() * bucket.buffer().element_size()
        return default_hooks.allreduce_hook(state, bucket)

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.hooked:  # the Trainer has wrapped the model in DDP by now
            self.trainer.model_wrapped.register_comm_hook(None, self.count)
            self.hooked = True

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == state.max_steps:
            params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            save_file(params, os.path.join(os.environ["DUMP"], f"rank{args.process_index}.safetensors"))
            reducer = self.trainer.model_wrapped._get_ddp_logging_data()
            report = {
                "reducer_tensors": reducer["num_parameter_tensors"],
                "reducer_bytes": reducer["total_parameter_size_bytes"],
                "allreduced_bytes": self.sent,
                "steps": state.global_step,
            }
            with open(os.path.join(os.environ["DUMP"], f"rank{args.process_index}.json"), "w") as f:
                json.dump(report, f)

init = training.PromptTrainer.__init__

def patched(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.add_callback(Dump(self))

training.PromptTrainer.__init__ = patched
sys.argv[0] = "ptuning"
runpy.run_module("ptuning", run_name="__main__")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    env.update(extra)
    return env


def _train_args(backbone: Path, out: Path, batch: int, accum: int) -> list[str]:
    return [
        "train", "--backbone", str(backbone), "--task", "sst2", "--output-dir", str(out),
        "--max-train-samples", str(TRAIN), "--max-eval-samples", str(EVAL), "--max-seq-length", "64",
        "--batch-size", str(batch), "--grad-accum", str(accum), "--eval-batch-size", "8",
        "--save-steps", "4", "--prompt-dropout", "0", "--head-dropout", "0", "--seed", "7", "--quiet", "--epochs", "1",
        "--no-bf16",  # DDP is compared with one process to float32 rounding; bf16 rounds per micro-batch
    ]  # fmt: skip


def _launch(program: list[str], args: list[str], **env: str) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --nproc_per_node 2 <program> <args>` on the CPU."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *program, *args,
    ]  # fmt: skip
    return _run(command, env)


def _accelerate_launch(args: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes 2 ptuning <args>` with the console command:
    with no GPU the processes run on the CPU (gloo), as under torchrun."""
    accelerate = [sys.executable, "-c", "from accelerate.commands.accelerate_cli import main; main()"]
    command = [
        *accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "--no_python", str(Path(sys.executable).with_name("ptuning")), *args,
    ]  # fmt: skip
    return _run(command, {})


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=_env(**env), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_close(a: dict, b: dict, atol: float, rtol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=lambda m, key=key: f"{key}: {m}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert_dir, shared_data):
    """A 2-process run (observed) and a single-process run with the same global batch and seed."""
    root = tmp_path_factory.mktemp("ddp")
    ddp, single, dump = root / "ddp", root / "single", root / "dump"
    dump.mkdir()
    observer = root / "observe.py"
    observer.write_text(OBSERVER)
    done = _launch([str(observer)], _train_args(tiny_bert_dir, ddp, batch=2, accum=2), DUMP=str(dump))
    single_done = subprocess.run(
        [sys.executable, "-m", "ptuning", *_train_args(tiny_bert_dir, single, batch=8, accum=1)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single_done.returncode == 0, single_done.stderr[-3000:]
    return {"ddp": ddp, "single": single, "dump": dump, "stdout": done.stdout, "root": root}


@pytest.mark.filterwarnings("ignore:`broadcast_buffers` is deprecated")
def test_ddp_reducer_holds_only_prompt_and_head(tiny_bert_dir, tmp_path):
    """DDP registers for all-reduce only what requires grad: the frozen backbone is not in it."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ptuning.core.config import PromptConfig
    from ptuning.data import get_task_spec
    from ptuning.model import PromptModel

    model, _ = PromptModel.from_backbone(
        str(tiny_bert_dir), get_task_spec("sst2"), PromptConfig(method="p-tuning-v2", prefix_len=4)
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(not p.requires_grad for p in model.backbone.parameters())
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model, broadcast_buffers=False)
        data = ddp._get_ddp_logging_data()
    finally:
        dist.destroy_process_group()
    assert data["num_parameter_tensors"] == len(trainable) == 3  # prefix table, head weight and bias
    assert data["total_parameter_size_bytes"] == sum(p.numel() * p.element_size() for p in trainable)
    backbone_bytes = sum(p.numel() * p.element_size() for p in model.backbone.parameters())
    assert data["total_parameter_size_bytes"] * 100 < backbone_bytes


@pytest.mark.slow
def test_trainer_ddp_all_reduces_prompt_and_head_once_per_step(runs):
    """In the real run: the Trainer's DDP holds the 3 trainable tensors, and with --grad-accum 2 it
    all-reduces their gradients once per optimizer step (no_sync on the first micro-batch)."""
    trainable = _tensors(runs["dump"] / "rank0.safetensors")
    trainable_bytes = sum(t.numel() * t.element_size() for t in trainable.values())
    for rank in (0, 1):
        seen = json.loads((runs["dump"] / f"rank{rank}.json").read_text())
        assert seen["reducer_tensors"] == len(trainable) == 3
        assert seen["reducer_bytes"] == trainable_bytes
        assert seen["allreduced_bytes"] == seen["steps"] * trainable_bytes == 8 * trainable_bytes


@pytest.mark.slow
def test_ranks_agree_and_match_single_process(runs):
    rank0 = _tensors(runs["dump"] / "rank0.safetensors")
    rank1 = _tensors(runs["dump"] / "rank1.safetensors")
    _assert_close(rank0, rank1, atol=0)  # identical on both ranks
    # what rank 0 saved at the last step is what it trained
    last = _tensors(runs["ddp"] / "checkpoints" / "checkpoint-8" / "prompt.safetensors")
    _assert_close(rank0, last, atol=0)
    # and the same as one process with the same global batch and seed
    single = _tensors(runs["single"] / "checkpoints" / "checkpoint-8" / "prompt.safetensors")
    _assert_close(last, single, atol=ATOL, rtol=RTOL)
    # not vacuous: the parameters moved between the two checkpoints
    middle = _tensors(runs["ddp"] / "checkpoints" / "checkpoint-4" / "prompt.safetensors")
    assert (
        middle["prefix_encoder.embedding.weight"] - last["prefix_encoder.embedding.weight"]
    ).abs().max() > 1e-3


@pytest.mark.slow
def test_only_rank_zero_writes(runs):
    ddp = runs["ddp"]
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["global_steps"] == 8 and metrics["train_examples"] == TRAIN
    assert json.loads((ddp / "train_config.json").read_text())["grad_accum"] == 2
    assert runs["stdout"].count("checkpoint: ") == 1  # the summary is printed once
    assert runs["stdout"].count("batch 2x2x2") == 1  # the run header too, with the world size
    # TensorBoard files carry the writer's pid in their name: a single process wrote them all
    pids = {re.search(r"\.(\d+)\.\d+$", p.name).group(1) for p in (ddp / "tensorboard").rglob("events.*")}
    assert len(pids) == 1
    checkpoint = ddp / "checkpoints" / "checkpoint-8"
    # one copy of the prompt and optimizer; one RNG state per rank (resume restores each)
    assert sorted(p.name for p in checkpoint.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert not list(ddp.rglob(".*.tmp"))


@pytest.mark.slow
def test_eval_counts_every_example_once(runs):
    """50 examples, per-device eval batch 8, 2 ranks: Accelerate pads the last global batch (2 real
    examples of 16) with repeats; the gathered metric and loss must equal a single-process eval."""
    from ptuning.training.evaluation import evaluate_checkpoint

    metrics = json.loads((runs["ddp"] / "metrics.json").read_text())
    reference = evaluate_checkpoint(runs["ddp"], max_eval_samples=EVAL, max_seq_length=64, batch_size=64)
    assert metrics["eval_examples"] == reference["examples"] == EVAL
    assert metrics["validation"]["accuracy"] == reference["accuracy"]
    assert metrics["validation"]["loss"] == pytest.approx(reference["loss"], abs=1e-6)


@pytest.mark.slow
def test_resume_under_ddp(runs, tiny_bert_dir):
    """A 2-process run stopped after checkpoint-4 and resumed with --resume ends where the unbroken
    run ended. The resumed run is started with `accelerate launch` and the `ptuning` console command
    (the unbroken one with torchrun and `python -m`), so this also checks the two launchers agree.
    The stop is simulated: a copy of checkpoint-4 of the unbroken run stands for what a run killed
    after writing it leaves on disk (tests/training/test_resume.py kills real single-process runs)."""
    resumed = runs["root"] / "resumed"
    source = runs["ddp"] / "checkpoints" / "checkpoint-4"
    target = resumed / "checkpoints" / "checkpoint-4"
    shutil.copytree(source, target)
    state = target / "trainer_state.json"
    state.write_text(state.read_text().replace(str(runs["ddp"]), str(resumed)))
    before = state.read_bytes()

    done = _accelerate_launch([*_train_args(tiny_bert_dir, resumed, batch=2, accum=2), "--resume"])
    assert f"resuming from {target}" in done.stdout
    assert state.read_bytes() == before  # it continued from checkpoint-4 rather than redoing it
    for name in ("checkpoints/checkpoint-8/prompt.safetensors", "prompt.safetensors"):
        _assert_close(_tensors(resumed / name), _tensors(runs["ddp"] / name), atol=1e-7)
    assert json.loads((resumed / "metrics.json").read_text())["global_steps"] == 8
