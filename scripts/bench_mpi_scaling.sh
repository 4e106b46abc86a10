#!/usr/bin/env bash
# Scaling of one experiment over N processes: `mpirun -np N vidkv run` (docs/distributed.md, "Scaling"). Runs a
# 48-cell sweep on the bundled trace (8 presets x 6 residual lengths, each cell one run x trace) once with a plain
# `vidkv run` (1 process, the reference) and once per N with mpirun, checks that every N wrote the reference's rows
# (all columns but `seconds`), and prints a markdown table: processes, wall seconds, speedup and parallel efficiency
# (speedup / N) against the plain single process, so MPI start-up counts against the parallel runs, and the CPU
# seconds of all processes together (what the work costs, independent of how busy the machine is).
#
#   bash scripts/bench_mpi_scaling.sh [--procs "1 2 4"] [--backend cpu|cuda] [--repeat R] [--vidkv PATH]
#                                     [--launcher mpi|shards]
#
# --launcher shards: no MPI; N processes `vidkv run --shard i/N --out DIR` started together, then `vidkv merge DIR`
# (the job-array path), timed as one run: for a vidkv built without MPI.
# --procs: process counts (default "1 2 4"; the GPU machine: "1 2 4 8 16"); --repeat: runs per count, the fastest
# is kept (default 1); --backend cuda: every rank replays on the GPU of its local rank. Needs a vidkv built with MPI
# (VIDKV_ENABLE_MPI, on when libboost-mpi-dev is installed) and mpirun. Counts above the number of cores run with
# --oversubscribe; as root, mpirun gets --allow-run-as-root (Open MPI refuses root without it).
set -euo pipefail
cd "$(dirname "$0")/.."
procs="1 2 4"
backend=cpu
repeat=1
vidkv=build/bin/vidkv
launcher=mpi
while (($#)); do
  case "$1" in
    --procs) procs="$2"; shift 2 ;;
    --backend) backend="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --vidkv) vidkv="$2"; shift 2 ;;
    --launcher) launcher="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench_mpi_scaling.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$vidkv" ] || { echo "bench_mpi_scaling.sh: no $vidkv: build first (bash scripts/setup.sh)" >&2; exit 1; }
[ "$launcher" = mpi ] || [ "$launcher" = shards ] || { echo "bench_mpi_scaling.sh: --launcher mpi or shards" >&2; exit 2; }
[ "$launcher" = shards ] || command -v mpirun >/dev/null || { echo "bench_mpi_scaling.sh: no mpirun: apt-get install openmpi-bin (or --launcher shards)" >&2; exit 1; }
[ "$launcher" = shards ] || ldd "$vidkv" | grep libmpi >/dev/null || { echo "bench_mpi_scaling.sh: $vidkv is built without MPI (configure with -DVIDKV_ENABLE_MPI=ON after installing libboost-mpi-dev)" >&2; exit 1; }

work=$(mktemp -d /tmp/vidkv-mpi-scaling.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/bench.yaml" <<YAML
name: mpi-scaling
description: "48 cells for scripts/bench_mpi_scaling.sh"
traces: [$PWD/traces/data/smollm2-135m-longdoc.h5]
seed: 42
backend: $backend
codec: {preset: fp16}
sweep:
  codec.preset: [kivi-2, kivi-4, vidkv-2, vidkv-k1.5-v2, vidkv-k1.5-v1.58, vidkv-k1.25-v1.58, vidkv-k1.5-v1.66-stp, vidkv-1]
  lifecycle.residual: [32, 64, 96, 128, 192, 256]
YAML
cores=$(nproc)
mpirun_args=()
[ "$(id -u)" -eq 0 ] && mpirun_args+=(--allow-run-as-root)

# results.csv without the `seconds` column.
strip_seconds() {
  python3 -c 'import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
i = rows[0].index("seconds")
for r in rows: print(",".join(r[:i] + r[i + 1:]))' "$1"
}

# N shard processes of the bench experiment into $2, started together, then vidkv merge (--launcher shards).
run_shards() {
  local n=$1 out=$2 pids=() i
  for ((i = 0; i < n; i++)); do
    "$vidkv" run "$work/bench.yaml" --quiet --shard "$i/$n" --out "$out" & pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
  "$vidkv" merge "$out"
}

# "WALL CPU" seconds of the fastest (by wall time) of $repeat runs of N processes; CPU is user + system time of
# every process of the run (bash's `time` over mpirun, which waits for its ranks).
measure() {
  local n=$1 best="" best_cpu="" out timing
  for ((k = 0; k < repeat; k++)); do
    out="$work/out-$n-$k"
    local cmd=("$vidkv" run "$work/bench.yaml" --quiet --out "$out")
    if [ "$n" -gt 1 ]; then
      local extra=()
      ((n > cores)) && extra+=(--oversubscribe --bind-to none)
      cmd=(mpirun "${mpirun_args[@]}" "${extra[@]}" -np "$n" "${cmd[@]}")
    fi
    if [ "$launcher" = shards ] && [ "$n" -gt 1 ]; then
      cmd=(run_shards "$n" "$out")
    fi
    timing=$( { TIMEFORMAT='%R %U %S'; time "${cmd[@]}" >"$work/log-$n-$k" 2>&1; } 2>&1 )
    read -r wall user sys <<<"$timing"
    if [ "$n" -eq 1 ] && [ "$k" -eq 0 ]; then
      strip_seconds "$out/results.csv" >"$work/reference.csv"
    elif ! cmp -s "$work/reference.csv" <(strip_seconds "$out/results.csv"); then
      echo "bench_mpi_scaling.sh: $n processes wrote other rows than 1 process ($out)" >&2
      exit 1
    fi
    if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
      best=$wall
      best_cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    fi
  done
  echo "$best $best_cpu"
}

[ "$launcher" = shards ] && echo "# vidkv run --shard i/N (N processes started together) + vidkv merge: 48 cells" ||
echo "# mpirun -np N vidkv run: 48 cells (8 presets x 6 residual lengths) on traces/data/smollm2-135m-longdoc.h5, backend $backend"
echo "# $(lscpu | sed -n 's/^Model name: *//p' | head -1), $cores cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$backend" = cuda ] && command -v nvidia-smi >/dev/null && echo "# GPUs: $(nvidia-smi --query-gpu=name --format=csv,noheader | paste -sd, -)"
echo "# $([ "$launcher" = mpi ] && mpirun --version | head -1 || echo "no MPI: shards + merge"); fastest of $repeat run(s) per count; efficiency = speedup / processes"
echo
echo "| processes | wall s | speedup | efficiency | CPU s (all processes) |"
echo "| --- | --- | --- | --- | --- |"
res=$(measure 1)  # (an assignment, so that set -e stops the script when a run fails)
read -r t1 c1 <<<"$res"
for n in $procs; do
  if [ "$n" -eq 1 ]; then
    t=$t1 c=$c1
  else
    res=$(measure "$n")
    read -r t c <<<"$res"
  fi
  awk -v n="$n" -v t="$t" -v t1="$t1" -v c="$c" \
    'BEGIN { printf "| %d | %.1f | %.2f | %.0f%% | %.1f |\n", n, t, t1 / t, 100 * t1 / (t * n), c }'
done
echo
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
