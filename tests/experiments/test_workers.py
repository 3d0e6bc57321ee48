"""`ptuning report --jobs N`'s worker processes end when the report's process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.helpers import REPO

PARENT = """
import time
from ptuning.experiments.report.workers import worker_pool

pool = worker_pool(1)
pool.submit(time.sleep, 300)  # a cell that would train for minutes
while not pool._processes:
    time.sleep(0.1)
print(*pool._processes, flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_worker_exits_when_the_report_process_is_killed():
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=env)
    worker = int(parent.stdout.readline())
    try:
        time.sleep(1.0)
        assert not _gone(worker)  # alive while its parent is
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while not _gone(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(worker), "the worker kept running after the report's process was killed"
    finally:
        parent.kill()
        if not _gone(worker):
            os.kill(worker, signal.SIGKILL)
