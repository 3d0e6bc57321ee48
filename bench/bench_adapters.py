"""AdapterHub `adapters` side by side with ptuning: prefix tuning and fine-tuning, ratios per environment.

A thin entry point to `ptuning.experiments.bench.peers` (`python -m ptuning.experiments.bench.peers` runs the same).

    python bench/bench_adapters.py --threads 2 --repeats 3     # ~10 min on 2 cores, env included
"""

import sys

from ptuning.experiments.bench.peers import main

if __name__ == "__main__":
    sys.exit(main())
