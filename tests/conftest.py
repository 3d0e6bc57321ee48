"""Fixtures every test folder uses: the benchmark data, MiniLM, a tiny BERT and the tiny demo checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import SHARED_DATA

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
if SHARED_DATA.is_dir():
    os.environ.setdefault("PTUNING_DATA", str(SHARED_DATA))
# 2 cores in CI; OMP_NUM_THREADS=1 when the cores are shared (oversubscribed threads crawl).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


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
    from ptuning.core.backbones import load_backbone

    return load_backbone("minilm")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A local model folder with a tiny random BERT and the MiniLM tokenizer."""
    from ptuning.testing import save_tiny_backbone

    return save_tiny_backbone("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def demo_checkpoints(tmp_path_factory, tiny_bert_dir) -> dict[str, Path]:
    """Tiny checkpoints of every task type on the tiny BERT, task name -> folder (read only)."""
    from ptuning.testing import make_checkpoints

    return make_checkpoints(tmp_path_factory.mktemp("demo"), tiny_bert_dir)
