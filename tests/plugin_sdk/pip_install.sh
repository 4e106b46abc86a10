#!/usr/bin/env bash
# `pip install .` into a fresh virtual environment (pyproject.toml, scikit-build-core), then, from outside the
# source tree: `python -c "import vidkv"` (the package must come from the venv's site-packages), `vidkv --help`,
# `vidkv plugins list` (the presets shipped in the wheel), and skeleton_sweep.sh against the pip-installed package
# (the quantizer skeleton built out of tree with CMAKE_PREFIX_PATH = the package folder, refused from YAML without
# --allow-plugins, a YAML sweep, `vidkv plugins check`). CI runs it after scripts/test.sh (.ci/run); locally:
# VIDKV_TEST_PIP=1 bash scripts/test.sh, or bash tests/plugin_sdk/pip_install.sh . alone.
# Usage: pip_install.sh SOURCE_DIR. The CMake build runs in SOURCE_DIR/build/pip/<wheel tag> (pyproject.toml; kept,
# so a second run is incremental); a cold build of the core, the plugins, `vidkv` and `_vidkv` (no tests, CUDA or
# fuzzers) takes about 3 min on 2 idle cores (docs/writing-a-plugin.md, "Packaging"). The dependencies are pinned to
# requirements.txt (-c), so they are the wheels scripts/setup.sh already put in pip's cache.
set -euo pipefail
src=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" PIP_DISABLE_PIP_VERSION_CHECK=1
if command -v ccache >/dev/null; then export CMAKE_CXX_COMPILER_LAUNCHER=ccache; fi
start=$SECONDS
"$py" -m pip install -q -c "$src/requirements.txt" "$src"
echo "pip install: $((SECONDS - start)) s"

cd "$work"
"$py" -c "import vidkv"
pkg=$("$py" -c "import os, vidkv; print(os.path.dirname(vidkv.__file__))")
case "$pkg" in
  "$work/venv/"*) ;;
  *) echo "import vidkv found $pkg, not the package installed in the fresh environment ($work/venv)"; exit 1 ;;
esac
"$py" -c "import vidkv; q = vidkv.codec({'type': 'uniform', 'bits': 2}); print('import vidkv:', q)"
"$work/venv/bin/vidkv" --help >help.txt
head -3 help.txt
"$work/venv/bin/vidkv" plugins list >plugins.txt
grep -q "kivi-2" plugins.txt

mkdir "$work/check"
bash "$src/tests/plugin_sdk/skeleton_sweep.sh" "$pkg" "$work/venv/bin/vidkv" "$src" "$work/check"
echo "pip install: import vidkv, the vidkv command, and the skeleton built against the installed package, loaded" \
     "from YAML, swept and checked: passed"
