#!/usr/bin/env bash
# Sets up VidKV on a fresh Debian 12 / Ubuntu 24.04 machine and builds it:
#   1. system packages (apt-get when root; otherwise prints the exact command and stops),
#   2. a project-local Python virtual environment .venv with the pinned packages of requirements.txt,
#   3. CMake configure + build into build/ (at most 2 parallel jobs unless VIDKV_JOBS says otherwise).
# Safe to re-run: each step is skipped when already done. Options: --no-python (skip the venv); --models (also
# install requirements-models.txt -- torch, transformers, ... -- into .venv and fetch the SmolLM2 GGUF weights and
# the sample video clips with scripts/fetch_model_data.sh; needed by vidkv live / vidkv record and their tests).
set -euo pipefail
cd "$(dirname "$0")/.."

want_python=1
want_models=0
for arg in "$@"; do
  case "$arg" in
    --no-python) want_python=0 ;;
    --models) want_models=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg'" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(build-essential cmake pkg-config libhdf5-dev libyaml-cpp-dev libfftw3-dev catch2 pybind11-dev
              python3-dev python3-venv libeigen3-dev libcli11-dev nlohmann-json3-dev
              openmpi-bin libopenmpi-dev libboost-mpi-dev  # mpirun -np N vidkv run (docs/distributed.md)
              clang  # the sanitizer build and the libFuzzer targets of scripts/test_sanitizers.sh
              chromium fonts-liberation)  # headless Chromium renders and screenshots the HTML reports in tests

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages. Run this, then run setup again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if ((want_python)); then
  if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/.requirements.installed; then
    echo "setup: creating the Python environment .venv (requirements.txt)"
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements.txt
    cp requirements.txt .venv/.requirements.installed
    rm -f .venv/.requirements-models.installed
  fi
  if ((want_models)); then
    if ! cmp -s requirements-models.txt .venv/.requirements-models.installed; then
      echo "setup: installing the model packages into .venv (requirements-models.txt; torch with its CUDA wheels, ~80 s)"
      .venv/bin/python -m pip install -q -r requirements-models.txt
      # kvpress pins transformers<5.3; its imports are in requirements-models.txt (see the comment there).
      .venv/bin/python -m pip install -q --no-deps kvpress==0.5.5
      cp requirements-models.txt .venv/.requirements-models.installed
    fi
    bash scripts/fetch_model_data.sh .venv/bin/python
  fi
elif ((want_models)); then
  echo "setup.sh: --models needs the Python environment (drop --no-python)" >&2; exit 2
fi

jobs="${VIDKV_JOBS:-2}"
cmake_args=()
if ((want_python)); then
  # The Python extension is built against the venv's interpreter so `import vidkv` works there.
  cmake_args+=(-DVIDKV_ENABLE_PYTHON=ON "-DPython3_EXECUTABLE=$PWD/.venv/bin/python")
fi
# The CUDA backend is built (compiled and linked, GPU or not: [cuda] tests skip without one) whenever nvcc exists,
# also where it is installed but not on PATH (/usr/local/cuda/bin); VIDKV_ENABLE_CUDA=OFF in the environment opts out.
nvcc_path="${CUDACXX:-$(command -v nvcc || true)}"
if [ -z "$nvcc_path" ] && [ -x /usr/local/cuda/bin/nvcc ]; then nvcc_path=/usr/local/cuda/bin/nvcc; fi
if [ -n "$nvcc_path" ] && [ "${VIDKV_ENABLE_CUDA:-ON}" != "OFF" ]; then
  export CUDACXX="$nvcc_path"
  cmake_args+=(-DVIDKV_ENABLE_CUDA=ON)
  echo "setup: CUDA backend on (nvcc: $nvcc_path)"
else
  if [ -n "$nvcc_path" ]; then
    cmake_args+=(-DVIDKV_ENABLE_CUDA=OFF)
    echo "setup: CUDA backend off (VIDKV_ENABLE_CUDA=OFF)"
  else
    echo "setup: CUDA backend off (no nvcc found)"
  fi
fi
if [ ! -f build/CMakeCache.txt ]; then
  cmake --preset default "${cmake_args[@]}" >/dev/null
elif ((${#cmake_args[@]})); then
  cmake build "${cmake_args[@]}" >/dev/null
fi
echo "setup: building (cmake --build build -j $jobs; about 10 minutes on 2 cores the first time)"
# Compiler messages pass through; the progress is printed every 10%. The build's own exit status decides
# (an earlier build's binary must not pass for this one).
set +e
cmake --build build -j "$jobs" 2>&1 | awk '/error:|warning:|\*\*\*/ { print; fflush(); next }
  /^\[ *[0-9]+%\]/ { s = $0; sub(/^\[ */, "", s); p = s + 0; if (p >= last + 10) { print "setup: build " p "%"; fflush(); last = p } }'
build_status=${PIPESTATUS[0]}
set -e
if [ "$build_status" -ne 0 ] || [ ! -x build/bin/vidkv ]; then
  echo "setup: build failed (exit status $build_status; run: cmake --build build)" >&2
  exit 1
fi
if ((want_python)); then
  # `import vidkv` in .venv: the package folder and the built extension, through a .pth file.
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  printf '%s\n%s\n%s\n' "$PWD/experiments/python" "$PWD/build/python" "$PWD/analysis" >"$site/vidkv.pth"
fi
echo "setup: done. The command line is build/bin/vidkv"
