"""How fast `ptuning train` answers an argument error, against `ptuning --help`.

An error in the options or files should not wait for torch and transformers to import (seconds):
`ptuning train` checks them first. This prints the wall time of each command (best of --repeats).

    python bench/bench_cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "ptuning --help": ["--help"],
    "ptuning train --train-file missing.csv": [
        "train",
        "--train-file",
        "missing.csv",
        "--validation-file",
        "x.csv",
    ],
}


def seconds(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ptuning", *argv], cwd=cwd, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory() as cwd:
        for name, argv in COMMANDS.items():
            best = min(seconds(argv, cwd, env) for _ in range(args.repeats))
            print(f"{name:45s} {best:.3f} s (best of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
