#!/usr/bin/env python
"""Bounded load test of `ptuning serve`, on loopback only.

A thin entry point to `ptuning.experiments.bench.load_test` (`python -m ptuning.experiments.bench.load_test` runs the same).
"""

import sys

from ptuning.experiments.bench.load_test import main

if __name__ == "__main__":
    sys.exit(main())
