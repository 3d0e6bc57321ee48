"""Epoch time of P-Tuning v2 with the shallow cache, against fine-tuning, on real SST-2 batches.

A thin entry point to `ptuning.experiments.bench.shallow_cache` (`python -m ptuning.experiments.bench.shallow_cache` runs the same).
"""

from ptuning.experiments.bench.shallow_cache import main

if __name__ == "__main__":
    raise SystemExit(main())
