"""`report`: report.md and a self-contained report.html for one results directory or a parent of several.

One results directory (it holds results.csv): experiment name, provenance, per-run aggregate table, result plots,
and trace plots when a trace is given. A parent directory of several results directories: one report covering
them all; the paper's experiments come first in the paper's order (Table 1, Table 2, Table 4, Table 5, Fig. 6a,
Fig. 6b, Fig. 7) with a short caption each, any other experiment after them by name.
"""

from __future__ import annotations

import json
import os
import re

from . import document as d
from .figures import safe_name
from .result_plots import make_result_plots
from .results import Experiment, find_experiments, is_results_dir, load_experiment
from .trace_plots import make_trace_plots

# Columns of the per-run aggregate table, in this order, whichever the results hold.
TABLE_COLUMNS = (
    "decode_attn_out_depth_error", "nominal_bits", "effective_bits", "key_nominal_bits", "value_nominal_bits", "key_effective_bits",
    "value_effective_bits", "key_rel_error",
    "value_rel_error", "attn_kl", "attn_topk_overlap", "attn_out_rel_error", "compression_ratio",
)

# The paper's experiments, in report order: (key matched at the start of the experiment name, label, caption).
PAPER_SECTIONS = (
    ("table1", "Table 1", "Group-wise settings (per-channel C vs per-token T) and the channel-selection metric "
                          "(range / variance / outlier) for the 2-bit key channels at 1.5-bit keys."),
    ("table2", "Table 2", "Main settings: KIVI against VidKV from 2/2 bits down to 1.25/1.58, with semantic token "
                          "protection (p = 0.2)."),
    ("table4", "Table 4", "Ablation: FFT on the 1-bit normal key channels, and semantic (STP) vs random (RTP) "
                          "token protection."),
    ("table5", "Table 5", "1-bit KV cache: KIVI 1-bit against VidKV 1-bit."),
    ("fig6a", "Fig. 6a", "Key bits from 1.75 down to 1.1 (share of 2-bit key channels); the paper sees little loss "
                         "down to about 1.2 bits and a sharp drop below."),
    ("fig6b", "Fig. 6b", "Share p of protected visual tokens from 0 to 1 (value bits 1.58 -> 2); the paper sees "
                         "monotone gains."),
    ("fig7", "Fig. 7", "Ternary dead-zone factor gamma; gamma = 0.7 is the paper's best."),
)

PROVENANCE_KEYS = ("experiment", "source_file", "git_revision", "build", "seed", "command_line", "overrides",
                   "plan_fingerprint", "traces")


def paper_section(name: str):
    """(index, label, caption) of the paper experiment an experiment name belongs to, or None.
    'table1-channel-selection' -> Table 1, 'table5-1bit' -> Table 5, 'fig6a-key-bits' -> Fig. 6a."""
    m = re.match(r"(table|tab|fig|figure)[\s_.-]*(\d+)([a-z](?![a-z]))?", name.strip().lower())
    if not m:
        return None
    key = ("table" if m.group(1).startswith("tab") else "fig") + m.group(2) + (m.group(3) or "")
    for i, (k, label, caption) in enumerate(PAPER_SECTIONS):
        if key == k:
            return i, label, caption
    return None


def aggregate_table(exp: Experiment) -> d.Table:
    """One row per per-trace aggregate row (layer = -1, head = -1) of results.csv, values as written there.
    The trace column is shown only when the experiment has more than one trace."""
    t = exp.table
    rows = t.aggregate_rows()
    columns = [c for c in TABLE_COLUMNS if any(isinstance(r.get(c), float) and r.get(c) == r.get(c) for r in rows)]
    multi_trace = len(t.traces()) > 1
    header = ["run"] + (["trace"] if multi_trace else []) + columns
    body = []
    for r in rows:
        body.append([str(r.get("run", ""))] + ([str(r.get("trace", ""))] if multi_trace else [])
                    + [r.get(c) for c in columns])
    return d.Table(header, body)


def _provenance_items(exp: Experiment):
    p = exp.provenance
    items = []
    for k in PROVENANCE_KEYS:
        if k in p:
            v = p[k]
            items.append((k, v if isinstance(v, (str, int, float)) else json.dumps(v)))
    if isinstance(p.get("runs"), list):
        items.append(("runs", f"{len(p['runs'])} (resolved codec of each in provenance.json)"))
    for k, v in p.items():
        if k not in PROVENANCE_KEYS and k != "runs":
            s = v if isinstance(v, (str, int, float)) else json.dumps(v)
            items.append((k, s if len(str(s)) <= 200 else str(s)[:199] + "\u2026"))
    return items


def _add_experiment(doc: d.Document, exp: Experiment, fig_dir: str, level: int, label: str = "",
                    caption: str = "", display_name: str = ""):
    title = f"{label}: {display_name or exp.name}" if label else (display_name or exp.name)
    doc.add(d.Heading(title, level, anchor=safe_name(display_name or exp.name)))
    if caption:
        doc.add(d.Paragraph("Paper: " + caption, css="caption"))
    if exp.description:
        doc.add(d.Paragraph(exp.description))
    t = exp.table
    doc.add(d.Paragraph(f"Results: `{_shown_path(exp.path)}` - {len(t.runs())} runs, {len(t.traces())} trace(s) "
                        f"({', '.join(t.traces())}), {len(t.rows)} rows."))
    doc.add(d.Heading("Provenance", level + 1))
    items = _provenance_items(exp)
    doc.add(d.KeyValues(items) if items else d.Paragraph("No provenance.json in the results directory.",
                                                          css="note"))
    if exp.config_text:
        doc.add(d.Code(exp.config_text, "Resolved config (config.yaml)"))
    doc.add(d.Heading("Per-run aggregates (layer = -1, head = -1)", level + 1))
    table = aggregate_table(exp)
    if table.rows:
        doc.add(table)
        doc.add(d.Paragraph("Numbers: integers as such, others to 4 significant digits; n/a = not computed."))
    else:
        doc.add(d.Paragraph("The results have no aggregate rows (layer = -1, head = -1).", css="note"))
    doc.add(d.Heading("Plots", level + 1))
    for plot in make_result_plots(t, fig_dir):
        _add_plot(doc, plot, level + 2)


def _shown_path(path):
    """A path relative to the working directory when it lies beneath it (reports stay free of local prefixes)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _add_plot(doc, plot, level):
    doc.add(d.Heading(plot.title, level))
    if plot.path:
        doc.add(d.Image(plot.path, plot.title, plot.caption))
        if plot.note:
            doc.add(d.Paragraph(plot.note, css="note"))
    else:
        doc.add(d.Paragraph(plot.note or "Not available.", css="note"))


def _add_trace(doc, trace_path, fig_dir, layers=None, heads=None):
    doc.add(d.Heading(f"Trace: {os.path.basename(trace_path)}", 2, anchor="trace"))
    doc.add(d.Paragraph(f"Trace file `{_shown_path(os.path.abspath(trace_path))}`."))
    for plot in make_trace_plots(trace_path, fig_dir, layers=layers, heads=heads):
        _add_plot(doc, plot, 3)


def build_report(results_dir, out_dir=None, trace=None, layers=None, heads=None):
    """Writes report.md, report.html and figures/ under out_dir (default: RESULTS_DIR itself, as `vidkv report`
    documents).
    Returns (markdown path, html path)."""
    results_dir = os.path.abspath(results_dir)
    if not os.path.isdir(results_dir):
        raise FileNotFoundError(f"{results_dir}: not a directory")
    out_dir = os.path.abspath(out_dir or results_dir)
    if trace:  # a trace that does not open fails before any figure is written
        from .trace import Trace

        with Trace(trace):
            pass
    fig_root = os.path.join(out_dir, "figures")
    os.makedirs(fig_root, exist_ok=True)

    if is_results_dir(results_dir):
        exp = load_experiment(results_dir)
        doc = d.Document(f"VidKV report: {exp.name}")
        _add_experiment(doc, exp, fig_root, level=2)
    else:
        paths = find_experiments(results_dir)
        if not paths:
            raise FileNotFoundError(f"{results_dir}: neither a results directory (results.csv) nor a parent of any")
        exps = [load_experiment(p) for p in paths]
        keyed = []
        for i, e in enumerate(exps):
            sec = paper_section(e.name) or paper_section(os.path.basename(e.path))
            keyed.append(((sec[0] if sec else len(PAPER_SECTIONS)), e.name, i, e, sec))
        keyed.sort(key=lambda k: (k[0], k[1], k[2]))
        paper = any(k[4] for k in keyed)
        doc = d.Document("VidKV paper experiments" if paper else f"VidKV report: {os.path.basename(results_dir)}")
        doc.add(d.Paragraph(
            f"{len(exps)} experiments under `{_shown_path(results_dir)}`" +
            (", the paper's in the order Table 1, Table 2, Table 4, Table 5, Fig. 6a, Fig. 6b, Fig. 7. "
             "The paper's numbers are end-to-end scores of 7B VideoLLMs; these are trace-level errors, so only "
             "orderings compare." if paper else ".")))
        doc.add(d.Table(["section", "experiment", "directory", "runs"],
                        [[(k[4][1] if k[4] else "other"), k[3].name, os.path.basename(k[3].path),
                          len(k[3].table.runs())] for k in keyed]))
        counts = {}
        for k in keyed:
            counts[k[3].name] = counts.get(k[3].name, 0) + 1
        for _, _, _, e, sec in keyed:
            # Two directories of one experiment (e.g. a re-run into table2-main-2): name them by directory.
            shown = e.name if counts[e.name] == 1 else f"{e.name} ({os.path.basename(e.path)})"
            _add_experiment(doc, e, os.path.join(fig_root, safe_name(os.path.basename(e.path))), level=2,
                            label=sec[1] if sec else "", caption=sec[2] if sec else "", display_name=shown)
    if trace:
        _add_trace(doc, trace, os.path.join(fig_root, "trace"), layers, heads)

    md_path = os.path.join(out_dir, "report.md")
    html_path = os.path.join(out_dir, "report.html")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(d.to_markdown(doc, out_dir))
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(d.to_html(doc))
    return md_path, html_path
