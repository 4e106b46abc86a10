#!/usr/bin/env bash
# The reliability checks of CI (docs/reliability.md), after scripts/test.sh:
#   1. builds the tree with clang into build-asan/ with AddressSanitizer + UndefinedBehaviorSanitizer (undefined
#      behaviour aborts) and libFuzzer coverage (Python and CUDA off), which also checks that clang builds it;
#   2. runs the whole C++ suite there (ctest, tests/cpp);
#   3. runs each libFuzzer target for VIDKV_FUZZ_SECONDS (default 20) from its seed corpus (scripts/fuzz.sh).
# Prints the time of each step. Needs clang (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${VIDKV_JOBS:-2}"
fuzz_seconds="${VIDKV_FUZZ_SECONDS:-20}"
start=$SECONDS
if [ ! -f build-asan/CMakeCache.txt ]; then
  # -O1: the sanitizers' usual level (fast enough to test, keeps frames for reports).
  cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release \
        "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -gline-tables-only" "-DCMAKE_C_FLAGS_RELEASE=-O1" \
        -DVIDKV_SANITIZE=address,undefined -DVIDKV_BUILD_FUZZERS=ON -DVIDKV_ENABLE_CUDA=OFF -DVIDKV_ENABLE_PYTHON=OFF \
        -DVIDKV_BUILD_TESTS=ON >/dev/null
fi
echo "sanitizers: building build-asan (clang, ASan + UBSan, libFuzzer targets)"
set +e
cmake --build build-asan -j "$jobs" 2>&1 | grep -E "error:|warning:|\*\*\*"
build_status=${PIPESTATUS[0]}
set -e
if [ "$build_status" -ne 0 ] || [ ! -x build-asan/bin/vidkv_tests ]; then
  echo "sanitizers: build failed (exit status $build_status; run: cmake --build build-asan)" >&2
  exit 1
fi
built=$SECONDS
echo "sanitizers: C++ suite under ASan + UBSan (ctest --test-dir build-asan)"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=1024"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Left out: the resident-memory bound of a streaming read (AddressSanitizer keeps freed blocks in a quarantine of
# up to 256 MB, so resident memory measures the sanitizer, not the reader; scripts/test.sh runs it), mpirun on
# the whole paper set (minutes under the sanitizers; the MPI kill-and-resume test runs here, scripts/test.sh runs both),
# the optimised metrics against the reference on every layer of the bundled trace (78 s under the sanitizers, the
# longest test there; the same code runs here through the synthetic traces with tails and presets, and
# scripts/test.sh runs it), and the check that every Catch2 test case has its own ctest name (it runs the test
# binary once per name and checks names, not memory). Together about 100 s of the 2 cores, which keeps CI under
# 30 minutes.
ctest --test-dir build-asan --output-on-failure -j "$jobs" \
      -E "grows resident memory|on the paper experiments|equal the reference on the bundled trace|runs under its own ctest name"
tested=$SECONDS
echo "sanitizers: fuzz targets, $fuzz_seconds s each"
bash scripts/fuzz.sh "$fuzz_seconds"
echo "sanitizers: build $((built - start)) s, C++ suite $((tested - built)) s, fuzzing $((SECONDS - tested)) s"
