"""Per-kernel time and DRAM bytes from Nsight Compute's CSV, in launch order, with a total per kernel name.

On a GPU machine (ncu on PATH; --clock-control none leaves the clocks alone, as the device tool's METHOD.md asks):

    ncu --clock-control none --print-units base --csv \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
        build-cuda/bin/vidkv bench --backend cuda --tokens 32768 --presets vidkv-k1.5-v1.58 --no-torch \
        --layers 2 --repeats 2 > ncu.csv
    python3 scripts/ncu_kernel_times.py ncu.csv [--skip N]

Prints one line per profiled launch (after the first N): its index, microseconds, MB read and written from DRAM,
and the kernel's name without its template arguments and parameters; then, per name, the launches, the total and
the median microseconds. The figures are one kernel at a time (ncu serialises launches), so overlap between kernels
(programmatic dependent launches) is not in them: their sum is an upper bound of a layer's time in the bench.
"""
from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from collections import OrderedDict


# Units as ncu 2025 prints them with --csv (ns, byte) and as older versions and other settings spell them.
_TIME_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}
_BYTES_MB = {"byte": 1e-6, "Kbyte": 1e-3, "Mbyte": 1.0, "Gbyte": 1e3, "KB": 1e-3, "MB": 1.0, "GB": 1e3}


def short_name(name: str) -> str:
    """`void ns::kernel<T, 2>(args)` -> `ns::kernel`."""
    name = re.sub(r"^void ", "", name).replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    depth, out = 0, []
    for ch in name:  # drop template arguments and the parameter list (nested brackets included)
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out).strip()


def read(path: str) -> list[dict]:
    """The launches of ncu's --csv output: [{id, name, us, read_mb, write_mb}] in launch order."""
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own messages start with ==PROF== etc.
    if not lines:
        sys.exit(f"{path}: no CSV rows (did ncu run, and with --csv?)")
    launches: OrderedDict = OrderedDict()
    for row in csv.DictReader(lines):
        key = row["ID"]
        entry = launches.setdefault(key, {"id": int(key), "name": short_name(row["Kernel Name"])})
        metric, unit = row["Metric Name"], row["Metric Unit"]
        if metric == "gpu__time_duration.sum":
            field, table = "us", _TIME_US
        elif metric in ("dram__bytes_read.sum", "dram__bytes_write.sum"):
            field, table = ("read_mb" if metric == "dram__bytes_read.sum" else "write_mb"), _BYTES_MB
        else:
            continue  # other metrics in the same CSV are not tabulated
        try:
            value = float(row["Metric Value"].replace(",", ""))
        except ValueError:
            continue  # "n/a" and the like: the launch shows NaN / 0 for it
        if unit not in table:
            sys.exit(f"{path}: launch {key}: unit {unit!r} of {metric} is not one of {sorted(table)} "
                     "(run ncu with --print-units base)")
        entry[field] = value * table[unit]
    return list(launches.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--skip", type=int, default=0, help="launches to leave out first (warm-up, setup)")
    args = ap.parse_args()
    launches = read(args.csv)[args.skip:]
    print(f"{'id':>5} {'us':>9} {'read MB':>8} {'write MB':>8}  kernel")
    for e in launches:
        print(f"{e['id']:>5} {e.get('us', float('nan')):>9.2f} {e.get('read_mb', 0.0):>8.2f} {e.get('write_mb', 0.0):>8.2f}  {e['name']}")
    by_name: OrderedDict = OrderedDict()
    for e in launches:
        if "us" in e:
            by_name.setdefault(e["name"], []).append(e["us"])
    print(f"\n{'launches':>8} {'total us':>10} {'median us':>10}  kernel")
    for name, times in sorted(by_name.items(), key=lambda kv: -sum(kv[1])):
        print(f"{len(times):>8} {sum(times):>10.1f} {statistics.median(times):>10.2f}  {name}")


if __name__ == "__main__":
    main()
