#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ for a bounded time each, starting from the seed corpora in fuzz/corpus/.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 20)] [TARGET ...]  (needs build-asan/ from
# scripts/test_sanitizers.sh, or BUILD=DIR). New corpus entries go to a temporary folder, never into the repo; a
# crash, timeout or out-of-memory input is written to fuzz-artifacts/ and the script exits 1.
# Prints one line per target: executions, executions per second, coverage (libFuzzer's cov: and ft:).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
build="${BUILD:-build-asan}"
targets=("$@")
((${#targets[@]})) || targets=(fuzz_trace_reader fuzz_experiment_yaml fuzz_packed_decode)
mkdir -p fuzz-artifacts
# max_allocation_size_mb: a block over 1 GiB is refused (null, then std::bad_alloc or an HDF5 error) instead of
# reaching libFuzzer's malloc limit, which would write an "oom" input even when the allocation happens in the child
# process that reads an untrusted trace (traces/trace_isolation.h) and is contained there.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=1024}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  log="fuzz-artifacts/$t.log"
  # -timeout 10: one input may take at most 10 s (the trace reader's stall limit is 2 s in the target);
  # -rss_limit_mb 2048: the memory bound (the trace reader's budget is 256 MiB in the target).
  if ! "$build/bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz-artifacts/$t-" "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
    echo "fuzz: $t FAILED (input and log in fuzz-artifacts/):"; tail -40 "$log"; status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || echo "")
  echo "fuzz: $t: ${seconds} s, $runs inputs, $speed per second, $cov"
  rm -rf "$work"
done
exit $status
