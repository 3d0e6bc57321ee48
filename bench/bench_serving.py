#!/usr/bin/env python
"""Serving benchmark on the real MiniLM backbone (backbone name "minilm").

A thin entry point to `ptuning.experiments.bench.serving` (`python -m ptuning.experiments.bench.serving` runs the same).
"""

import sys

from ptuning.experiments.bench.serving import main

if __name__ == "__main__":
    sys.exit(main())
