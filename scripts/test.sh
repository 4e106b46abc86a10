#!/usr/bin/env bash
# Sets up (scripts/setup.sh --models: the model packages and data of the live-model tests too), then runs every test: the C++ suite through ctest, then the Python suite through
# pytest in .venv. GPU tests ([cuda]) are reported as skipped on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --models
echo "test: C++ suite (ctest)"
ctest --test-dir build --output-on-failure -j 2
if [ "${VIDKV_TEST_PIP:-0}" = "1" ]; then
  # `pip install .` into a fresh venv, `import vidkv`, `vidkv --help` and the skeleton plugin against the installed
  # package (tests/plugin_sdk/pip_install.sh): a second build of the core, the extension and the command in
  # build/pip (3 to 4 min cold on 2 cores), so opt-in here: VIDKV_TEST_PIP=1 bash scripts/test.sh. CI runs it
  # always, after this script (.ci/run).
  echo "test: pip install . into a fresh virtual environment"
  bash tests/plugin_sdk/pip_install.sh .
fi
if compgen -G "tests/python/test_*.py" >/dev/null; then
  echo "test: Python suite (pytest)"
  .venv/bin/python -m pytest -q tests/python
fi
