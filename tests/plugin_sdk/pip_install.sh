#!/usr/bin/env bash
# `pip install .` into a fresh virtual environment (pyproject.toml, scikit-build-core), then `import vidkv`,
# `vidkv --help`, `vidkv plugins list` (the presets shipped in the wheel) and the quantizer skeleton built out of
# tree against the installed package (find_package(VidKV) with CMAKE_PREFIX_PATH = the package folder).
# Usage: pip_install.sh SOURCE_DIR. The build runs in SOURCE_DIR/build/pip (kept: a second run is incremental).
set -euo pipefail
src=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
if command -v ccache >/dev/null; then export CMAKE_CXX_COMPILER_LAUNCHER=ccache; fi
"$work/venv/bin/python" -m pip install -q "$src"
cd "$work"
"$work/venv/bin/python" -c "import vidkv; q = vidkv.codec({'type': 'uniform', 'bits': 2}); print('import vidkv:', q)"
"$work/venv/bin/vidkv" --help | head -3
"$work/venv/bin/vidkv" plugins list | grep -q "kivi-2"
pkg=$("$work/venv/bin/python" -c "import os, vidkv; print(os.path.dirname(vidkv.__file__))")
cmake -S "$src/examples/plugin-skeletons/quantizer" -B plugin -DCMAKE_PREFIX_PATH="$pkg" >/dev/null
cmake --build plugin >/dev/null
"$work/venv/bin/vidkv" plugins check plugin/libskeleton_absmax.so | tail -1
echo "pip install: import vidkv, the vidkv command and find_package(VidKV) from the installed package work"
