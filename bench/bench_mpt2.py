"""MPT-2 on CoNLL-2004 (MiniLM, P-Tuning v2): the task alone against a prompt first trained on
CoNLL-2003 and CoNLL-2004 together, then tuned on CoNLL-2004 (`--init-from`).

A thin entry point to `ptuning.experiments.bench.mpt2` (`python -m ptuning.experiments.bench.mpt2` runs the same).
"""

from ptuning.experiments.bench.mpt2 import main

if __name__ == "__main__":
    main()
