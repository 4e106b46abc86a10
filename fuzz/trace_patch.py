#!/usr/bin/env python3
"""Stores a corrupted trace as a small patch against the trace it was mutated from, and applies one back.

  fuzz/trace_patch.py make SEED MUTANT OUT.patch   # SEED as a path relative to the repository root
  fuzz/trace_patch.py apply PATCH OUT.h5

Patch format (text, what tests/cpp/test_traces_hostile.cpp reads): a first line `seed: PATH` (relative to the
repository root), then one line per run of changed bytes: `OFFSET HEXBYTES` (decimal offset, the new bytes).
Comment lines start with '#'. The files have the seed's length (mutation never changes it).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make(seed, mutant, out, note=""):
    a = open(os.path.join(ROOT, seed), "rb").read()
    b = open(mutant, "rb").read()
    assert len(a) == len(b), "a mutant has its seed's length"
    runs, i = [], 0
    while i < len(a):
        if a[i] != b[i]:
            j = i
            while j < len(a) and a[j] != b[j]:
                j += 1
            runs.append((i, b[i:j]))
            i = j
        else:
            i += 1
    with open(out, "w") as f:
        if note:
            f.write(f"# {note}\n")
        f.write(f"seed: {seed}\n")
        for off, data in runs:
            f.write(f"{off} {data.hex()}\n")


def apply(patch, out):
    seed, edits = None, []
    for line in open(patch):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("seed:"):
            seed = line.split(":", 1)[1].strip()
        else:
            off, hexbytes = line.split()
            edits.append((int(off), bytes.fromhex(hexbytes)))
    data = bytearray(open(os.path.join(ROOT, seed), "rb").read())
    for off, b in edits:
        data[off:off + len(b)] = b
    open(out, "wb").write(data)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], sys.argv[4], " ".join(sys.argv[5:]))
    elif len(sys.argv) == 4 and sys.argv[1] == "apply":
        apply(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
