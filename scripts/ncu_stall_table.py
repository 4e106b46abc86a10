#!/usr/bin/env python3
"""Where a kernel's warps wait, from Nsight Compute's source counters, as the tables of docs/performance.md.

Input: one kernel's SASS page exported by
    ncu --set full --import-source no -k regex:NAME -c 1 -o rep <command>
    ncu -i rep.ncu-rep --page source --csv --print-source sass > sass.csv
(the first line names the kernel, the second holds the column names, then one row per SASS instruction in address
order). Output (markdown, stdout):
  - the stall reasons' shares of all warp-state samples (ncu's stall_* columns, "Not Issued" ones left out);
  - the opcodes by instructions executed and by samples (--opcodes N: the first N);
  - with --cuts I0,I1,...: per range [Ik, Ik+1) of instruction indices (row numbers after the header, as the
    other tables print them) the instructions executed, divided by --per (e.g. the kernel's tiles; default 1), and
    the range's share of the samples; the ranges are found with --hot;
  - with --hot N: the N instructions holding the most samples, with their index, executions / --per and text.
Used for the tensor-core attention kernel's profile (docs/performance.md, section 8, "Where the tensor-core kernel's
time goes"). Standard library only; errors name the file and what is missing.
"""
import argparse
import collections
import csv
import sys


def read_rows(path):
    try:
        with open(path, newline="") as f:
            lines = list(csv.reader(f))
    except OSError as e:
        sys.exit(f"ncu_stall_table: {path}: {e.strerror}")
    if len(lines) < 3:
        sys.exit(f"ncu_stall_table: {path}: fewer than 3 lines; expected ncu --page source --csv --print-source sass")
    header = lines[1]
    for need in ("Source", "Instructions Executed", "Warp Stall Sampling (All Samples)"):
        if need not in header:
            sys.exit(f"ncu_stall_table: {path}: no column '{need}' on line 2 (was the report taken with --set full "
                     f"and exported with --page source --print-source sass?)")
    ix = {name: i for i, name in enumerate(header)}
    stalls = [n for n in header if n.startswith("stall_") and "Not Issued" not in n]

    def number(row, name):
        v = row[ix[name]] if ix[name] < len(row) else ""
        try:
            return int(v.replace(",", "")) if v not in ("", "-") else 0
        except ValueError:
            return 0

    rows = []
    for row in lines[2:]:
        text = row[ix["Source"]].strip() if ix["Source"] < len(row) else ""
        rows.append({"text": text, "executed": number(row, "Instructions Executed"),
                     "samples": number(row, "Warp Stall Sampling (All Samples)"),
                     "stalls": {n: number(row, n) for n in stalls}})
    return lines[0], rows, stalls


def opcode(text):
    parts = text.split()
    if not parts:
        return "?"
    op = parts[1] if parts[0].startswith("@") and len(parts) > 1 else parts[0]
    return op.split(".")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", help="ncu --page source --csv --print-source sass output of one kernel")
    ap.add_argument("--cuts", default="", help="instruction indices bounding the ranges, comma-separated")
    ap.add_argument("--per", type=float, default=1.0, help="divide instruction counts by this (e.g. tiles)")
    ap.add_argument("--opcodes", type=int, default=15, help="opcodes listed")
    ap.add_argument("--hot", type=int, default=0, help="list the instructions holding the most samples")
    a = ap.parse_args()
    if a.per <= 0:
        sys.exit("ncu_stall_table: --per must be positive")
    kernel, rows, stalls = read_rows(a.csv)
    executed = sum(r["executed"] for r in rows)
    samples = sum(r["samples"] for r in rows)
    if samples == 0:
        sys.exit(f"ncu_stall_table: {a.csv}: no warp-state samples (profile with --set full, or a longer kernel)")
    print(f"{kernel[1] if len(kernel) > 1 else kernel[0]}: {executed:,} warp instructions "
          f"({executed / a.per:,.1f} per --per unit), {samples:,} samples\n")
    print("| stall reason | share of samples |\n| --- | ---: |")
    totals = collections.Counter()
    for r in rows:
        totals.update(r["stalls"])
    for name, v in totals.most_common():
        if v:
            print(f"| {name[len('stall_'):]} | {100 * v / samples:.1f}% |")
    print("\n| opcode | executed | share | samples |\n| --- | ---: | ---: | ---: |")
    ex, sa = collections.Counter(), collections.Counter()
    for r in rows:
        ex[opcode(r["text"])] += r["executed"]
        sa[opcode(r["text"])] += r["samples"]
    for op, v in ex.most_common(a.opcodes):
        print(f"| {op} | {v:,} | {100 * v / max(executed, 1):.1f}% | {100 * sa[op] / samples:.1f}% |")
    if a.cuts:
        try:
            cuts = sorted({int(c) for c in a.cuts.split(",") if c.strip()} | {0, len(rows)})
        except ValueError:
            sys.exit(f"ncu_stall_table: --cuts '{a.cuts}': expected integers separated by commas")
        print("\n| range | executed / per | share of samples |\n| --- | ---: | ---: |")
        for lo, hi in zip(cuts, cuts[1:]):
            part = rows[lo:hi]
            print(f"| [{lo}, {hi}) | {sum(r['executed'] for r in part) / a.per:,.1f} | "
                  f"{100 * sum(r['samples'] for r in part) / samples:.1f}% |")
    if a.hot:
        print("\n| index | samples | executed / per | instruction |\n| ---: | ---: | ---: | --- |")
        order = sorted(range(len(rows)), key=lambda i: -rows[i]["samples"])[:a.hot]
        for i in order:
            r = rows[i]
            print(f"| {i} | {100 * r['samples'] / samples:.1f}% | {r['executed'] / a.per:,.2f} | `{r['text']}` |")


if __name__ == "__main__":
    main()
