"""The benchmarks, in one home; `bench/*.py` and `scripts/load_test.py` are thin entry points to them.

`ptuning bench` (speed and memory of each method, side by side): `config` (methods, settings,
targets), `worker` (one method measured in its own process), `peers` (PEFT and AdapterHub
`adapters`), `driver` (every method, round-robin over repeats), `report` (ratios, targets, table).
The others, each behind its entry point in `bench/` or `scripts/`: `precision` (bf16 against fp32),
`shallow_cache`, `ddp_bytes`, `mpt2`, `serving` (memory and throughput of the engine) and
`load_test` (a bounded load test of `ptuning serve`).

Importing this package loads no torch (`ptuning bench --help` reads its choices from here).
"""

from .config import ALL_METHODS, BACKBONE_TARGETS, METHOD_SPECS, QUICK, TARGETS, BenchConfig
from .driver import environment, run_bench, run_worker
from .report import check_targets, format_table, ratios

__all__ = [
    "ALL_METHODS",
    "BACKBONE_TARGETS",
    "METHOD_SPECS",
    "QUICK",
    "TARGETS",
    "BenchConfig",
    "check_targets",
    "environment",
    "format_table",
    "ratios",
    "run_bench",
    "run_worker",
]
