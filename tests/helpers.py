"""Plain helpers the test folders share (fixtures live in the conftest.py files)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The benchmark files: $PTUNING_DATA where set, else ../shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("PTUNING_DATA") or REPO.parent / "shared" / "data")
FIXTURES = REPO / "tests" / "fixtures"  # small hand-made files in the official formats

needs_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="benchmark data folder ../shared/data is not present"
)


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


def peft_prefix_failure() -> str | None:
    """Why PEFT's prefix tuning cannot run on BERT sequence classification with the installed PEFT
    and transformers ("ValueError: ..."), or None where it runs. Asked of the libraries, not of their
    versions: PEFT 0.21 under transformers 5.24 failed, PEFT 0.22 under 5.25 runs."""
    import torch
    from peft import PrefixTuningConfig, TaskType, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    model = get_peft_model(
        BertForSequenceClassification(config),
        PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=2),
    )
    try:
        with torch.no_grad():
            model(
                input_ids=torch.ones(1, 4, dtype=torch.long),
                attention_mask=torch.ones(1, 4, dtype=torch.long),
            )
    except Exception as exc:  # noqa: BLE001 - whatever PEFT raises is the reason
        return f"{type(exc).__name__}: {exc}"
    return None
