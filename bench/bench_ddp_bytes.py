"""What DDP sends per optimizer step: P-Tuning v2 (frozen backbone) against full fine-tuning.

A thin entry point to `ptuning.experiments.bench.ddp_bytes` (`python -m ptuning.experiments.bench.ddp_bytes` runs the same).
"""

import sys

from ptuning.experiments.bench.ddp_bytes import main

if __name__ == "__main__":
    sys.exit(main())
