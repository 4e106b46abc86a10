#!/usr/bin/env python3
"""Mutation probe of the trace reader: random small byte changes to a trace, each mutant run through a vidkv command.

Usage: fuzz/mutate_traces.py --vidkv build/bin/vidkv --seed-trace T.h5 [--count N] [--command validate|info|run]
                             [--timeout S] [--keep DIR] [--rng SEED]

Each mutant changes 1..4 runs of 1..4 bytes (biased to the file's first 64 KiB, where HDF5 keeps the superblock,
object headers, attributes and B-tree nodes). A mutant's outcome is one of: ok (exit 0), error (exit 1 with a
message), crash (killed by a signal, or exit code > 1 other than a vidkv error), hang (past --timeout). Crashing and
hanging mutants are copied to --keep with their outcome in the name, so they can become regression tests.
Prints a tally per outcome and one line per crash / hang.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def mutate(data: bytearray, rng: random.Random) -> bytearray:
    out = bytearray(data)
    head = min(len(out), 65536)
    for _ in range(rng.randint(1, 4)):
        span = rng.randint(1, 4)
        pos = rng.randrange(head if rng.random() < 0.85 else len(out))
        kind = rng.random()
        for i in range(pos, min(pos + span, len(out))):
            if kind < 0.4:
                out[i] = rng.randrange(256)
            elif kind < 0.6:
                out[i] ^= 1 << rng.randrange(8)
            elif kind < 0.8:
                out[i] = 0xFF
            else:
                out[i] = 0
    return out


def run_one(vidkv, command, path, timeout, workdir):
    if command == "run":
        exp = os.path.join(workdir, "exp.yaml")
        with open(exp, "w") as f:
            f.write(f"name: probe\ntraces: {path}\ncodec: {{preset: kivi-2}}\noutput: {workdir}/results/{{name}}\n")
        argv = [vidkv, "run", exp, "--quiet", "--out", os.path.join(workdir, "out-%d" % time.monotonic_ns())]
    else:
        argv = [vidkv, "trace", command, path]
    start = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        return "hang", f"no exit after {timeout} s", time.monotonic() - start
    took = time.monotonic() - start
    text = (p.stdout + p.stderr).strip().splitlines()
    last = text[-1] if text else ""
    if p.returncode < 0:
        return "crash", f"signal {signal.Signals(-p.returncode).name}: {last}", took
    if p.returncode == 0:
        return "ok", last, took
    if p.returncode in (1, 2) and "vidkv" in (p.stderr or "") and "unexpected error" not in p.stderr:
        return "error", last, took
    return "crash", f"exit {p.returncode}: {last}", took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vidkv", required=True)
    ap.add_argument("--seed-trace", required=True, action="append")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--command", default="validate", choices=["validate", "info", "run"])
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--keep", default=None)
    ap.add_argument("--rng", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.rng)
    seeds = [bytearray(open(p, "rb").read()) for p in a.seed_trace]
    tally = {}
    slowest = 0.0
    with tempfile.TemporaryDirectory() as work:
        for n in range(a.count):
            s = rng.randrange(len(seeds))
            mutant = mutate(seeds[s], rng)
            path = os.path.join(work, "mutant.h5")
            with open(path, "wb") as f:
                f.write(mutant)
            outcome, text, took = run_one(a.vidkv, a.command, path, a.timeout, work)
            slowest = max(slowest, took)
            tally[outcome] = tally.get(outcome, 0) + 1
            if outcome in ("crash", "hang"):
                print(f"mutant {n} (seed {os.path.basename(a.seed_trace[s])}): {outcome}: {text}", flush=True)
                if a.keep:
                    os.makedirs(a.keep, exist_ok=True)
                    shutil.copy(path, os.path.join(a.keep, f"{outcome}-{a.command}-{a.rng}-{n}.h5"))
            for d in os.listdir(work):
                if d.startswith("out-"):
                    shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    print(f"{a.count} mutants, command {a.command}: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())) +
          f"; slowest {slowest:.2f} s")
    return 1 if tally.get("crash") or tally.get("hang") else 0


if __name__ == "__main__":
    sys.exit(main())
