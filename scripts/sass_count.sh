#!/usr/bin/env bash
# Registers, spills and static SASS instruction counts of one CUDA source's kernels, without a GPU: compiles FILE.cu
# for sm_90 with the flags of build/compile_commands.json (configure the build first: scripts/setup.sh), disassembles
# it with cuobjdump and nvdisasm (the CUDA toolkit's, or else NVIDIA's wheels `nvidia-cuda-cuobjdump` and
# `nvidia-cuda-nvdisasm` from PyPI, unpacked into build/.cuda-tools once), and prints per kernel matching REGEX its instructions and loops (scripts/sass_loops.py).
# Static counts, for comparing two versions of a kernel; run-time counts come from Nsight Compute on a GPU.
#   bash scripts/sass_count.sh attention/decode_attention_fragment.cu 'fragment_kernelILi128ELi2E' [LOOPS, default 8]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then sed -n '2,7p' "$0"; exit 2; fi
SRC=$(realpath "$1")
PATTERN=$2
LOOPS=${3:-8}
OUTDIR=build/.cuda-tools
mkdir -p "$OUTDIR"
# cuobjdump -sass runs nvdisasm: both from the toolkit when it has them, else from NVIDIA's wheels on PyPI.
if command -v cuobjdump >/dev/null && command -v nvdisasm >/dev/null; then
  CUOBJDUMP=$(command -v cuobjdump)
elif [ -x /usr/local/cuda/bin/cuobjdump ] && [ -x /usr/local/cuda/bin/nvdisasm ]; then
  CUOBJDUMP=/usr/local/cuda/bin/cuobjdump
else
  CUOBJDUMP=$(find "$OUTDIR" -name cuobjdump -type f 2>/dev/null | head -1)
  if [ -z "$CUOBJDUMP" ] || [ -z "$(find "$OUTDIR" -name nvdisasm -type f | head -1)" ]; then
    echo "sass_count: no cuobjdump / nvdisasm; fetching NVIDIA's wheels nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm from PyPI into $OUTDIR" >&2
    python3 -m pip download -q --no-deps -d "$OUTDIR/wheels" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm
    for w in "$OUTDIR"/wheels/*.whl; do python3 -m zipfile -e "$w" "$OUTDIR/unpacked"; done
    CUOBJDUMP=$(find "$OUTDIR/unpacked" -name cuobjdump -type f | head -1)
  fi
  NVDISASM=$(find "$OUTDIR" -name nvdisasm -type f | head -1)
  chmod +x "$CUOBJDUMP" "$NVDISASM"
  export PATH="$(dirname "$NVDISASM"):$PATH"
fi
DIR_FLAGS=$(python3 - "$SRC" <<'PY'
import json, re, shlex, sys
for e in json.load(open("build/compile_commands.json")):
    if e["file"] == sys.argv[1]:
        args = shlex.split(e["command"])[1:]
        keep, skip = [], False
        for a in args:
            if skip: skip = False; continue
            if a in ("-o", "-c", "-x"): skip = True; continue
            if a == e["file"] or a.startswith("--generate-code") or a.startswith("-Xcompiler"): continue
            keep.append(a)
        # The device's build optimises fully: drop a local build's lowered device optimisation (scripts/setup.sh
        # with CUDAFLAGS="-Xcicc -O1 -Xptxas -O0", which builds faster on a machine without a GPU), whose SASS has
        # stack frames and several times the instructions, and ask for -O3 from both.
        out = []
        for i, a in enumerate(keep):
            if a in ("-Xcicc", "-Xptxas") and i + 1 < len(keep) and re.fullmatch(r"-O[0-3]", keep[i + 1]): continue
            if re.fullmatch(r"-O[0-3]", a) and i > 0 and keep[i - 1] in ("-Xcicc", "-Xptxas"): continue
            out.append(a)
        keep = out + ["-Xptxas", "-O3"]
        print(shlex.quote(e["directory"]), " ".join(shlex.quote(a) for a in keep)); break
else:
    sys.exit(f"sass_count: {sys.argv[1]} is not in build/compile_commands.json (a CUDA build configured?)")
PY
)
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
OUT="$OUTDIR/$(basename "$SRC" .cu)"
CUBIN=$(realpath -m "$OUT.cubin")
rm -f "$CUBIN"
eval "set -- $DIR_FLAGS"
DIR=$1; shift
(cd "$DIR" && "$NVCC" "$@" -gencode arch=compute_90,code=sm_90 -cubin -o "$CUBIN" -x cu "$SRC" -Xptxas -v) > "$OUT.log" 2>&1 ||
  { echo "sass_count: nvcc failed (its output: $OUT.log)" >&2; tail -20 "$OUT.log" >&2; exit 1; }
# ptxas -v: per kernel its name, then its stack / spills, then its registers.
awk -v pat="$PATTERN" '/Compiling entry function/ { name = $0; sub(/.*function ./, "", name); sub(/. for .*/, "", name) }
  /bytes spill/ { spill = $0; sub(/.*: +/, "", spill) }
  /Used [0-9]+ registers/ && name ~ pat { regs = $0; sub(/.*Used /, "", regs); sub(/,.*/, "", regs); print name ": " regs ", " spill }' "$OUT.log"
"$CUOBJDUMP" -sass "$OUT.cubin" > "$OUT.sass"
python3 scripts/sass_loops.py "$OUT.sass" "$PATTERN" "$LOOPS"
