"""Command line: `python -m vidkv_analysis report|trace-plots ...` (the C++ `vidkv report` calls `report`)."""

from __future__ import annotations

import argparse
import sys


def _int_list(text):
    try:
        return [int(t) for t in text.split(",") if t.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def build_parser():
    p = argparse.ArgumentParser(prog="python -m vidkv_analysis",
                                description="Plots and reports from VidKV traces and experiment results.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="report.md + self-contained report.html for a results dir or a parent of several")
    r.add_argument("results_dir", metavar="RESULTS_DIR")
    r.add_argument("--trace", metavar="TRACE.h5", help="also draw the trace plots of this trace")
    r.add_argument("--out", metavar="DIR", help="output directory (default RESULTS_DIR itself)")
    r.add_argument("--layers", type=_int_list, help="trace layers, e.g. 0,5 (default: first and last)")
    r.add_argument("--heads", type=_int_list, help="trace KV heads, e.g. 0 (default: 0)")
    t = sub.add_parser("trace-plots", help="magnitude, channel-profile, FFT and visual-layout plots of a trace")
    t.add_argument("trace", metavar="TRACE.h5")
    t.add_argument("--out", metavar="DIR", required=True)
    t.add_argument("--layers", type=_int_list, help="layers, e.g. 0,5 (default: first and last)")
    t.add_argument("--heads", type=_int_list, help="KV heads, e.g. 0 (default: 0)")
    t.add_argument("--fraction", type=float, default=0.5,
                   help="share of key channels selected for 2 bits (default 0.5 = 1.5-bit keys)")
    t.add_argument("--protect-fraction", type=float, default=0.2,
                   help="share of visual tokens protected by STP (default 0.2)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "report":
            from .report import build_report
            md, html = build_report(args.results_dir, args.out, args.trace, args.layers, args.heads)
            print(md)
            print(html)
        else:
            from .trace_plots import make_trace_plots
            for plot in make_trace_plots(args.trace, args.out, args.layers, args.heads, args.fraction,
                                         args.protect_fraction):
                print(plot.path if plot.path else f"skipped: {plot.title}: {plot.note}")
    except (OSError, ValueError, KeyError) as e:  # a user or input-file error: exit status 1 (README); usage: argparse's 2
        print(f"vidkv_analysis {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0
