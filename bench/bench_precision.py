"""bf16 autocast against fp32, interleaved step by step in one process: step time and inference latency.

A thin entry point to `ptuning.experiments.bench.precision` (`python -m ptuning.experiments.bench.precision` runs the same).
"""

import sys

from ptuning.experiments.bench.precision import main

if __name__ == "__main__":
    sys.exit(main())
