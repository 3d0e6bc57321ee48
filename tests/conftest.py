from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The benchmark files: $PTUNING_DATA where set, else ../shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("PTUNING_DATA") or REPO.parent / "shared" / "data")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
if SHARED_DATA.is_dir():
    os.environ.setdefault("PTUNING_DATA", str(SHARED_DATA))
# 2 cores in CI; OMP_NUM_THREADS=1 when the cores are shared (oversubscribed threads crawl).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


needs_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="benchmark data folder ../shared/data is not present"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("benchmark data folder ../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tasks(shared_data):
    """`tasks(name)`: a built-in task loaded from the benchmark files once per session (SST-2 train is
    67k lines); tests must not modify it."""
    from ptuning.data import load_task

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_task(name, shared_data)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def minilm():
    """The real MiniLM backbone and tokenizer (loaded once; tests must not modify its weights)."""
    from ptuning.backbones import load_backbone

    return load_backbone("minilm")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A local model folder with a tiny random BERT and the MiniLM tokenizer."""
    from ptuning.testing import save_tiny_backbone

    return save_tiny_backbone("bert", tmp_path_factory.mktemp("tiny-bert"))


def load_script():
    """The load test behind scripts/load_test.py (it also builds the tiny demo checkpoints of the serving tests)."""
    from ptuning.bench import load_test

    return load_test


@pytest.fixture(scope="session")
def demo_checkpoints(tmp_path_factory, tiny_bert_dir) -> dict[str, Path]:
    """Tiny checkpoints of every task type on the tiny BERT, task name -> folder (read only)."""
    return load_script().make_checkpoints(tmp_path_factory.mktemp("demo"), tiny_bert_dir)


def kill_when(args: list[str], ready, timeout: float = 240.0) -> None:
    """Run `python -m ptuning ARGS` and SIGKILL it as soon as `ready()` is true (a crash at that moment)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptuning", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the command ended before it could be killed"
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
