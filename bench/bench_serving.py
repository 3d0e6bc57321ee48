#!/usr/bin/env python
"""Serving benchmark on the real MiniLM backbone (backbone name "minilm").

A thin entry point to `ptuning.bench.serving` (`python -m ptuning.bench.serving` runs the same).
"""

import sys

from ptuning.bench.serving import main

if __name__ == "__main__":
    sys.exit(main())
