#!/usr/bin/env python3
"""Static instruction counts of CUDA kernels' SASS (cuobjdump -sass output), for comparing kernel versions on a
machine without a GPU (scripts/sass_count.sh runs it).

Per function whose mangled name matches REGEX: its instruction count and its loops (backward branches), innermost
first, each with its instruction count and opcode histogram. Static counts: a branch not taken at run time still
counts, so compare versions of one kernel, and take run-time counts from Nsight Compute (scripts/gpu_check.sh).

    python3 scripts/sass_loops.py FILE.sass REGEX [LOOPS]
"""
import collections
import re
import sys


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    path, pattern = sys.argv[1], sys.argv[2]
    shown = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    functions = re.split(r"\n\s*Function : ", open(path).read())
    found = 0
    for text in functions[1:]:
        name = text.split("\n", 1)[0].strip()
        if not re.search(pattern, name):
            continue
        found += 1
        code = []  # (address, opcode, instruction text)
        for line in text.split("\n"):
            m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
            if m:
                body = re.sub(r"^@!?U?P\w+\s+", "", m.group(2).strip())  # drop the predicate
                code.append((int(m.group(1), 16), body.split()[0] if body else "", body))
        print(f"{name}: {len(code)} instructions")
        index = {a: i for i, (a, _, _) in enumerate(code)}
        loops = []
        for i, (a, op, body) in enumerate(code):
            m = re.search(r"0x([0-9a-f]+)", body) if op.startswith("BRA") else None
            if m and int(m.group(1), 16) < a and int(m.group(1), 16) in index:
                loops.append((index[int(m.group(1), 16)], i))
        for s, e in sorted(loops, key=lambda r: r[1] - r[0])[:shown]:
            ops = collections.Counter(op.split(".")[0] for _, op, _ in code[s:e + 1])
            top = ", ".join(f"{k} {v}" for k, v in ops.most_common(16))
            print(f"  loop {code[s][0]:#x}..{code[e][0]:#x}: {e - s + 1} instructions: {top}")
    if not found:
        print(f"no function matches {pattern!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
