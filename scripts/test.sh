#!/usr/bin/env bash
# Sets up (scripts/setup.sh --models: the model packages and data of the live-model tests too), then runs every test: the C++ suite through ctest, then the Python suite through
# pytest in .venv. GPU tests ([cuda]) are reported as skipped on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --models
echo "test: C++ suite (ctest)"
ctest --test-dir build --output-on-failure -j 2
if compgen -G "tests/python/test_*.py" >/dev/null; then
  echo "test: Python suite (pytest)"
  .venv/bin/python -m pytest -q tests/python
fi
