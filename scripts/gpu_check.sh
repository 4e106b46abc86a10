#!/usr/bin/env bash
# One pass over everything that needs a GPU, on a machine with CUDA, the C++ dependencies, and pybind11, torch and
# transformers in `python3` (the development GPU machine: Ubuntu 24.04, CUDA 13), in this order:
#   1. configure (preset cuda, Ninja, the Python extension) and build vidkv_tests, vidkv (for a deadline of 330 s or
#      more) and _vidkv (450 s or more) into build-cuda/;
#   2. the [cuda] decode attention tests (prints the fragment kernel's largest error / tolerance);
#   3. `vidkv bench --attention` (vidkv-k1.5-v1.58-fragment, the fragment kernel's vidkv instance, and
#      vidkv-k1.5-v1.58, 8k to 128k tokens, batch 1 and 8, against fp16 SDPA), then the same for kivi-2-fragment and
#      kivi-2;
#   4. `vidkv bench --live --fused --fused-only` (kivi-2-fragment and vidkv-k1.5-v1.58-fragment against DynamicCache
#      at 32k, batch 1 and 8; its whole output as live.txt);
#   5. the other [cuda] tests;
#   6. Nsight Compute (when `ncu` is on PATH): time, warp instructions, DRAM bytes, issue activity and registers of the
#      decode attention kernels of vidkv-k1.5-v1.58-fragment at 8 x 64k (NCU_PRESETS="a b": these presets, one run
#      each), then the fragment kernel's vidkv instance's
#      stall reasons (warps stalled per issued instruction, by reason);
#   7. the attention bench at 8 x 64k with the general kernel's placement by default and with
#      VIDKV_CUDA_ATTENTION_BESIDE=after, =always and =one-split, then with VIDKV_CUDA_ATTENTION_COMPACT=off (A / B, in
#      one process each, without torch; COMPACT=off places the full kernel by its own rule: compare it with =after);
#   8. (step pdl) the attention bench of vidkv-k1.5-v1.58-fragment at 64k tokens, batch 1 and 8, with the programmatic
#      dependent launches on and off (VIDKV_NO_DEPENDENT_LAUNCH=1: all of them, the transform -> fragment kernel one
#      and the combine kernel's), in one process each, without torch;
#   9. (step ncu-source) Nsight Compute's source counters of the fragment kernel's vidkv instance at 8 x 64k: the
#      sampled warp stalls per SASS instruction, as $LOG/vidkv_source.csv (ncu --page source --print-source sass).
#  10. (step multi-token) the attention bench with 2 and 4 query tokens per sequence (--query-tokens) at 32k tokens,
#      batch 1 and 8, both fragment presets, against SDPA with a lower-right causal mask;
#  11. (step py-fused) tests/python/test_fused_attention.py with torch on the GPU (the live hook's fused path, steps of
#      several tokens included);
#  12. (step beside-fewer) the attention bench at batches 2 and 3 (32k and 64k) and with 2 query tokens at 32k x 1,
#      the general kernel's splits by the fewer-splits rule (default) and without it (VIDKV_CUDA_ATTENTION_BESIDE=
#      requested), one process each, without torch;
#  13. (step replay) `vidkv bench --backend cuda` at 32k and 64k tokens for kivi-2 and vidkv-k1.5-v1.58, without torch:
#      issue 11's encode + decode against the copy bandwidth;
#  13b. (step replay-ab) the same once per setting of GPU_CHECK_AB, one process each (A / B of a switch);
#  14. (step gqa) the attention bench at 16 query heads per KV head (8 KV heads, two query head groups per run), 32k
#      and 64k tokens, batch 1 and 8, both fragment presets, against SDPA at the same geometry;
#  15. (step replay-kernels) Nsight Compute's time and DRAM bytes of every kernel of step 13's bench at 32k (2 layers),
#      one kernel at a time, for vidkv-k1.5-v1.58 and kivi-2 (scripts/ncu_kernel_times.py);
#  16. (step replay-stalls) the fused key encode and decode kernels' instructions, issue activity, occupancy limits
#      and stall reasons at 32k;
# GPU_CHECK_STEPS picks the steps after the build and their order (names: attention-tests bench-vidkv bench-kivi
# live rest-tests ncu ncu-stalls ncu-source placement pdl multi-token py-fused beside-fewer replay replay-ab gqa replay-kernels replay-stalls, bench-64k: step 3 for both fragment presets at 64k tokens
# only, and ab: the same once per setting of GPU_CHECK_AB (step_ab); default: all but ncu-source, pdl, multi-token, py-fused, beside-fewer,
# replay, replay-ab, gqa, replay-kernels, replay-stalls, bench-64k and ab, in the order above); GPU_CHECK_TARGETS the build's targets.
# Each step is skipped when less time is left than it needs, so that the run fits a deadline (first argument, seconds,
# default 540: a device call's limit less a margin; a cold build of vidkv and vidkv_tests took 106 and 129 s on an
# H100 machine's 16 cores since the fused key kernels were split into four files (about 230 s before; with _vidkv
# about 70 s more, not timed since): give a deadline of 330 s or more to reach any step after it). Logs, and the whole
# output as gpu_check.txt, go to $OUT when set (the device tool's result folder), else build-cuda/gpu-check/. Usage: bash scripts/gpu_check.sh [DEADLINE_S]
set -uo pipefail
cd "$(dirname "$0")/.."
DEADLINE=${1:-540}
T0=$(date +%s)
LOG=${OUT:-build-cuda/gpu-check}
mkdir -p "$LOG"
exec > >(tee "$LOG/gpu_check.txt") 2>&1  # the whole output also as a file (a device call returns only its tail)
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
B=build-cuda/bin

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
cmake --preset cuda -G Ninja -DVIDKV_ENABLE_PYTHON=ON -DPython3_EXECUTABLE="$(which python3)" \
  -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >"$LOG/configure.log" 2>&1 || { tail -30 "$LOG/configure.log"; exit 1; }
if [ "$(left)" -lt 120 ]; then echo "gpu_check: a deadline of $DEADLINE s leaves no time for the build" >&2; exit 2; fi
TARGETS="vidkv vidkv_tests"
[ "$DEADLINE" -ge 450 ] && TARGETS="$TARGETS _vidkv"  # the Python extension only where the live bench (step 4) can run
[ "$DEADLINE" -lt 330 ] && TARGETS="vidkv_tests"      # and only the tests where no bench can run
TARGETS=${GPU_CHECK_TARGETS:-$TARGETS}                # or as given
timeout $(($(left) - 60)) cmake --build build-cuda -j"$(nproc)" --target $TARGETS >"$LOG/build.log" 2>&1
rc=$?
echo "== build rc $rc at $(($(date +%s) - T0)) s"
if [ $rc -ne 0 ]; then grep -n "error" "$LOG/build.log" | head -30; tail -15 "$LOG/build.log"; exit 1; fi

# run_tests FILTER MAX_S NAME: the filtered [cuda] tests within MAX_S seconds (less if the deadline is nearer).
run_tests() {
  local L; L=$(left)
  if [ "$L" -lt 40 ]; then echo "== tests $1 skipped (time)"; return; fi
  echo "== tests $1 (left $L s)"
  timeout $((L > $2 + 30 ? $2 : L - 30)) $B/vidkv_tests "$1" >"$LOG/tests_$3.log" 2>&1
  echo "rc $?"
  grep -E "FAILED|passed|test cases|assertions" "$LOG/tests_$3.log" | head -12
  grep "fragment kernel" "$LOG/tests_$3.log" | awk '{print $NF}' | sort -g | tail -1 | sed 's/^/largest fragment kernel error \/ tolerance: /'
}
# The ncu steps' case: vidkv-k1.5-v1.58-fragment at 8 x 64k; step ncu profiles each preset of NCU_PRESETS (space
# separated, default that one) in its own run.
NCU_CASE=(--backend cuda --attention --tokens 65536 --batches 8 --presets vidkv-k1.5-v1.58-fragment --repeats 1 --no-torch)
step_attention-tests() { run_tests "[cuda][attention]" 120 attention; }
step_bench-vidkv() {
  [ "$(left)" -gt 100 ] || { echo "== bench-vidkv skipped (time)"; return; }
  echo "== bench --attention, vidkv-k1.5-v1.58-fragment and vidkv-k1.5-v1.58 (left $(left) s)"
  timeout 100 $B/vidkv bench --backend cuda --attention --tokens 8192,32768,65536,131072 \
    --batches 1,8 --presets vidkv-k1.5-v1.58-fragment,vidkv-k1.5-v1.58 2>&1 | grep -v "^$"
}
step_bench-64k() {
  [ "$(left)" -gt 30 ] || { echo "== bench-64k skipped (time)"; return; }
  echo "== bench --attention, both fragment presets at 64k tokens (left $(left) s)"
  timeout 60 $B/vidkv bench --backend cuda --attention --tokens 65536 --batches 1,8 \
    --presets vidkv-k1.5-v1.58-fragment,kivi-2-fragment 2>&1 | grep -v "^$"
}
step_bench-kivi() {
  [ "$(left)" -gt 100 ] || { echo "== bench-kivi skipped (time)"; return; }
  echo "== bench --attention (left $(left) s)"
  timeout 100 $B/vidkv bench --backend cuda --attention --tokens 8192,32768,65536,131072 --batches 1,8 \
    --presets kivi-2-fragment,kivi-2 2>&1 | grep -v "^$"
}
step_live() {
  [[ $TARGETS == *_vidkv* ]] || { echo "== live skipped (the Python extension _vidkv is not built: a deadline below 450 s or GPU_CHECK_TARGETS)"; return; }
  [ "$(left)" -gt 110 ] || { echo "== live skipped (time)"; return; }
  local L; L=$(left)
  echo "== bench --live --fused (left $L s)"
  PYTHONPATH=experiments/python:build-cuda/python timeout $((L - 60 > 150 ? 150 : L - 60)) \
    python3 -m vidkv.bench_live --fused --fused-only --presets kivi-2-fragment,vidkv-k1.5-v1.58-fragment --tokens 32768 \
    --batches 1,8 --steps 16 --rounds 2 >"$LOG/live.txt" 2>&1
  echo "rc $? (whole output: live.txt)"
  grep -v "^    " "$LOG/live.txt" | tail -20  # the table and notes, or an error's last lines without its traceback's code
}
step_rest-tests() { run_tests "[cuda]~[attention]" 100 rest; }
step_multi-token() {
  for n in 2 4; do
    [ "$(left)" -gt 60 ] || { echo "== multi-token $n skipped (time)"; continue; }
    echo "== bench --attention --query-tokens $n, both fragment presets at 32k tokens (left $(left) s)"
    timeout 60 $B/vidkv bench --backend cuda --attention --query-tokens $n --tokens 32768 --batches 1,8 \
      --presets vidkv-k1.5-v1.58-fragment,kivi-2-fragment 2>&1 | grep -v "^$"
  done
}
step_beside-fewer() {
  for rule in default requested; do
    [ "$(left)" -gt 45 ] || { echo "== beside-fewer $rule skipped (time)"; continue; }
    echo "== bench --attention, the general kernel's splits beside: $rule (VIDKV_CUDA_ATTENTION_BESIDE), batches 2 and 3 (left $(left) s)"
    VIDKV_CUDA_ATTENTION_BESIDE=$rule timeout 40 $B/vidkv bench --backend cuda --attention --tokens 32768,65536 --batches 2,3 \
      --presets kivi-2-fragment,vidkv-k1.5-v1.58-fragment --no-torch 2>&1 | grep -E "^\| (kivi|vidkv)"
    echo "== the same, 2 query tokens at 32k x 1, $rule"
    VIDKV_CUDA_ATTENTION_BESIDE=$rule timeout 30 $B/vidkv bench --backend cuda --attention --query-tokens 2 --tokens 32768 \
      --batches 1 --presets kivi-2-fragment,vidkv-k1.5-v1.58-fragment --no-torch 2>&1 | grep -E "^\| (kivi|vidkv)"
  done
}
step_replay() {
  [ "$(left)" -gt 60 ] || { echo "== replay skipped (time)"; return; }
  echo "== bench --backend cuda, kivi-2 and vidkv-k1.5-v1.58 at 32k and 64k tokens (left $(left) s)"
  timeout 60 $B/vidkv bench --backend cuda --tokens 32768,65536 --presets kivi-2,vidkv-k1.5-v1.58 --no-torch 2>&1 | grep -E "^\||copy"
}
# (step replay-ab) step_replay's bench once per setting of GPU_CHECK_AB (as step_ab), each in its own process: e.g.
# GPU_CHECK_AB="VIDKV_CUDA_PAIRED_LAUNCH=off; default; VIDKV_CUDA_PAIRED_LAUNCH=off".
step_replay-ab() {
  local setting settings
  IFS=';' read -ra settings <<<"${GPU_CHECK_AB:-default}"
  for setting in "${settings[@]}"; do
    setting=$(echo "$setting" | xargs)
    [ "$(left)" -gt 45 ] || { echo "== replay-ab ($setting) skipped (time)"; continue; }
    echo "== bench --backend cuda at 32k and 64k, $setting (left $(left) s)"
    [ "$setting" = default ] && setting=""
    # shellcheck disable=SC2086  # the setting's NAME=VALUE words (none for default), split on purpose
    env $setting timeout 45 $B/vidkv bench --backend cuda --tokens 32768,65536 --presets kivi-2,vidkv-k1.5-v1.58 --no-torch 2>&1 \
      | grep -E "^\| (kivi|vidkv)|copy"
  done
}
step_gqa() {
  [ "$(left)" -gt 90 ] || { echo "== gqa skipped (time)"; return; }
  echo "== bench --attention, 8 KV heads x 16 query heads, both fragment presets (left $(left) s)"
  timeout 90 $B/vidkv bench --backend cuda --attention --kv-heads 8 --query-heads-per-kv 16 --tokens 32768,65536 --batches 1,8 \
    --presets vidkv-k1.5-v1.58-fragment,kivi-2-fragment 2>&1 | grep -E "^\| (kivi|vidkv)|Decode"
}
step_py-fused() {
  [[ $TARGETS == *_vidkv* ]] || { echo "== py-fused skipped (the Python extension _vidkv is not built)"; return; }
  [ "$(left)" -gt 60 ] || { echo "== py-fused skipped (time)"; return; }
  echo "== pytest tests/python/test_fused_attention.py on the GPU (left $(left) s)"
  PYTHONPATH=experiments/python:build-cuda/python timeout 90 python3 -m pytest -q -p no:cacheprovider \
    tests/python/test_fused_attention.py >"$LOG/py_fused.log" 2>&1
  echo "rc $?"
  tail -15 "$LOG/py_fused.log"
}
step_ncu() {
  local preset L
  for preset in ${NCU_PRESETS:-vidkv-k1.5-v1.58-fragment}; do
    { [ "$(left)" -gt 35 ] && command -v ncu >/dev/null; } || { echo "== ncu skipped (time or no ncu)"; return; }
    L=$(left)
    echo "== ncu, $preset at 8 x 64k (left $L s; ncu locks the clocks: times above the bench's)"
    timeout $((L > 95 ? 90 : L - 5)) ncu -k regex:"fragment_kernel|fragment_vidkv_kernel|split_kernel|combine_kernel|transform_kernel" -c 6 \
      --metrics gpu__time_duration.sum,smsp__inst_executed.sum,dram__bytes_read.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \
      $B/vidkv bench "${NCU_CASE[@]/vidkv-k1.5-v1.58-fragment/$preset}" 2>&1 |
      grep -E "fragment_kernel|fragment_vidkv|split_kernel|combine|transform|^\s+(gpu__|smsp__|dram__|launch__|sm__)" | cut -c1-110
  done
}
step_ncu-stalls() {
  { [ "$(left)" -gt 35 ] && command -v ncu >/dev/null; } || { echo "== ncu-stalls skipped (time or no ncu)"; return; }
  local L; L=$(left)
  echo "== ncu, the vidkv instance's stall reasons (warps per issued instruction, 0.05 or more) at 8 x 64k (left $L s)"
  timeout $((L > 65 ? 60 : L - 5)) ncu -k regex:fragment_vidkv_kernel -c 1 \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
    $B/vidkv bench "${NCU_CASE[@]}" 2>&1 |
    grep -E "issue_stalled|==ERROR|==WARNING" | awk '!/issue_stalled/ || $NF + 0 >= 0.05' | cut -c1-110
}
step_ncu-source() {
  { [ "$(left)" -gt 50 ] && command -v ncu >/dev/null; } || { echo "== ncu-source skipped (time or no ncu)"; return; }
  local L; L=$(left)
  echo "== ncu, the vidkv instance's source counters at 8 x 64k into $LOG/vidkv_source.csv (left $L s)"
  rm -f "$LOG/vidkv_source.ncu-rep"
  timeout $((L > 95 ? 80 : L - 15)) ncu -k regex:fragment_vidkv_kernel -c 1 --section SourceCounters --section WarpStateStats \
    -o "$LOG/vidkv_source" $B/vidkv bench "${NCU_CASE[@]}" >"$LOG/ncu_source.log" 2>&1
  echo "rc $?"
  ncu -i "$LOG/vidkv_source.ncu-rep" --page source --csv --print-source sass >"$LOG/vidkv_source.csv" 2>&1
  echo "rc $? ($(wc -l <"$LOG/vidkv_source.csv") lines)"
  ncu -i "$LOG/vidkv_source.ncu-rep" --page details --section WarpStateStats 2>&1 | grep -vE "^\s*$" | cut -c1-110 | tail -30
  rm -f "$LOG/vidkv_source.ncu-rep"  # not needed back (and large)
}
# (step replay-kernels) Nsight Compute's time and DRAM bytes of every kernel of `vidkv bench --backend cuda` at 32k
# tokens, 2 layers, for vidkv-k1.5-v1.58 and kivi-2, one kernel at a time (scripts/ncu_kernel_times.py; the CSVs and
# per-launch tables as $LOG/ncu_replay_<preset>.{csv,txt}).
step_replay-kernels() {
  local preset L
  for preset in vidkv-k1.5-v1.58 kivi-2; do
    { [ "$(left)" -gt 60 ] && command -v ncu >/dev/null; } || { echo "== replay-kernels skipped (time or no ncu)"; return; }
    L=$(left)
    echo "== ncu, every replay kernel of $preset at 32k (left $L s)"
    timeout $((L > 105 ? 100 : L - 5)) ncu --clock-control none --print-units base --csv \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      $B/vidkv bench --backend cuda --tokens 32768 --presets "$preset" --no-torch --layers 2 --repeats 2 >"$LOG/ncu_replay_$preset.csv" 2>&1
    echo "rc $?"
    python3 scripts/ncu_kernel_times.py "$LOG/ncu_replay_$preset.csv" >"$LOG/ncu_replay_$preset.txt" && sed -n '/launches/,$p' "$LOG/ncu_replay_$preset.txt"
  done
}
# (step replay-stalls) the fused key kernels of vidkv-k1.5-v1.58 at 32k (encode_split_tile, decode_split_tile; one
# launch each): instructions, issue activity, warps active, registers, and the stall reasons (warps stalled per issued
# instruction, 0.05 or more), with the clocks left alone.
step_replay-stalls() {
  local kernel L
  local metrics='gpu__time_duration.sum,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__occupancy_limit_registers,launch__occupancy_limit_shared_mem,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
  for kernel in encode_split_tile decode_split_tile; do
    { [ "$(left)" -gt 40 ] && command -v ncu >/dev/null; } || { echo "== replay-stalls skipped (time or no ncu)"; return; }
    L=$(left)
    echo "== ncu, $kernel of vidkv-k1.5-v1.58 at 32k: issue and stall reasons (left $L s)"
    timeout $((L > 65 ? 60 : L - 5)) ncu --clock-control none -k regex:"$kernel" -s 2 -c 1 --metrics "$metrics" \
      $B/vidkv bench --backend cuda --tokens 32768 --presets vidkv-k1.5-v1.58 --no-torch --layers 2 --repeats 2 2>&1 |
      grep -E "^\s+(gpu__|smsp__|sm__|launch__)|==ERROR" | awk '!/issue_stalled/ || $NF + 0 >= 0.05' | cut -c1-110
  done
}
step_pdl() {
  for off in 0 1; do
    if [ "$(left)" -gt 40 ]; then
      echo "== bench --attention, vidkv-k1.5-v1.58-fragment at 64k, VIDKV_NO_DEPENDENT_LAUNCH=$off (1: every programmatic dependent launch off) (left $(left) s)"
      VIDKV_NO_DEPENDENT_LAUNCH=$off timeout 30 $B/vidkv bench --backend cuda --attention --tokens 65536 --batches 1,8 \
        --presets vidkv-k1.5-v1.58-fragment --no-torch 2>&1 | grep "^| vidkv-k1.5-v1.58-fragment"
      echo "rc ${PIPESTATUS[0]}"
    fi
  done
}
# A / B of environment switches (step ab): the attention bench of both fragment presets at 64k tokens, batch 1 and 8,
# without torch, once per setting of GPU_CHECK_AB (settings separated by ';', each a space-separated list of
# NAME=VALUE, or 'default' for none), each in its own process, so that the rows compare within one call; e.g.
# GPU_CHECK_AB="default; VIDKV_NO_DEPENDENT_LAUNCH=1".
step_ab() {
  local setting settings
  IFS=';' read -ra settings <<<"${GPU_CHECK_AB:-default}"
  for setting in "${settings[@]}"; do
    setting=$(echo "$setting" | xargs)  # trimmed
    [ "$(left)" -gt 30 ] || { echo "== ab ($setting) skipped (time)"; continue; }
    echo "== bench --attention at 64k, $setting (left $(left) s)"
    [ "$setting" = default ] && setting=""
    # shellcheck disable=SC2086  # the setting's NAME=VALUE words (none for default), split on purpose
    env $setting timeout 30 $B/vidkv bench --backend cuda --attention --tokens 65536 --batches 1,8 \
      --presets vidkv-k1.5-v1.58-fragment,kivi-2-fragment --no-torch 2>&1 | grep "^| [vk]"
  done
}
step_placement() {
  for beside in default after always one-split; do
    if [ "$(left)" -gt 40 ]; then
      echo "== bench --attention, the general kernel's placement $beside, 8 x 64k (left $(left) s)"
      VIDKV_CUDA_ATTENTION_BESIDE=$beside timeout 30 $B/vidkv bench --backend cuda --attention --tokens 65536 --batches 8 \
        --presets kivi-2-fragment --no-torch 2>&1 | grep "^| kivi-2-fragment"
    fi
  done
  if [ "$(left)" -gt 40 ]; then
    echo "== bench --attention, the full general kernel on the residual tiles (VIDKV_CUDA_ATTENTION_COMPACT=off), 8 x 64k"
    VIDKV_CUDA_ATTENTION_COMPACT=off timeout 30 $B/vidkv bench --backend cuda --attention --tokens 65536 --batches 8 \
      --presets kivi-2-fragment --no-torch 2>&1 | grep "^| kivi-2-fragment"
  fi
}
for step in ${GPU_CHECK_STEPS:-attention-tests bench-vidkv bench-kivi live rest-tests ncu ncu-stalls placement}; do
  if ! declare -F "step_$step" >/dev/null; then echo "gpu_check: no step $step" >&2; continue; fi
  "step_$step"
done
echo "== done at $(($(date +%s) - T0)) s"
