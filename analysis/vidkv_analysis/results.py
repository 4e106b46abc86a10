"""Reading one experiment's results directory (written by `vidkv run`).

A results directory holds `config.yaml` (resolved config), `provenance.json` (git revision, build flags, seeds),
`results.csv` and `results.jsonl` (the same rows). Columns: experiment, run, trace, layer, kv_head, metric columns
(empty or NaN when not computed), then one `param.<dotted.path>` column per swept parameter. Rows: one per
run x trace x layer x KV head, per-layer aggregates (kv_head = -1) and per-trace aggregates (layer = -1,
kv_head = -1). Results written before the column was renamed call it `head` (which collides with pandas'
DataFrame.head); they are read the same way, the column renamed to kv_head.

Extra columns are kept; missing optional ones are simply absent. Only `results.csv` (or, failing that,
`results.jsonl`) is required.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field

# Key columns that identify a row; everything else is a metric or a parameter.
KEY_COLUMNS = ("experiment", "run", "trace", "layer", "kv_head")
# Columns that describe a run rather than measure it: the lifecycle it used and the prefill it replayed.
RUN_COLUMNS = ("lifecycle", "prefill_tokens")
# The KV-head column's name in results written before 2026-11.
OLD_HEAD_COLUMN = "head"

# The metric columns of the results contract, in contract order (used to order report tables and plots).
METRIC_COLUMNS = (
    "key_rel_error", "value_rel_error", "key_mse", "value_mse", "key_snr_db", "value_snr_db",
    "key_cosine", "value_cosine", "attn_logit_rel_error", "attn_kl", "attn_topk_overlap",
    "attn_out_rel_error", "attn_out_rel_error_key_only", "attn_out_rel_error_value_only",
    "decode_attn_out_rel_error", "decode_attn_out_rel_value", "decode_attn_out_mse", "decode_attn_kl",
    "decode_attn_out_depth_error",
    "key_nominal_bits", "value_nominal_bits", "key_effective_bits", "value_effective_bits",
    "nominal_bits", "effective_bits", "compression_ratio", "seconds",
)

PARAM_PREFIX = "param."


def parse_cell(text):
    """Returns a float for a numeric cell (NaN for an empty one), else the stripped string."""
    if text is None:
        return math.nan
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if s == "":
        return math.nan
    try:
        return float(s)
    except ValueError:
        return s


def is_number(x) -> bool:
    return isinstance(x, float) and not math.isnan(x)


@dataclass
class ResultsTable:
    """Rows of results.csv as dicts. Numeric cells are floats (NaN when empty); other cells are strings."""

    columns: list
    rows: list

    @property
    def metric_columns(self):
        known = [c for c in METRIC_COLUMNS if c in self.columns]
        extra = [c for c in self.columns
                 if c not in KEY_COLUMNS and c not in METRIC_COLUMNS and c not in RUN_COLUMNS
                 and not c.startswith(PARAM_PREFIX)
                 and any(is_number(r.get(c)) for r in self.rows)]
        return known + extra

    @property
    def param_columns(self):
        return [c for c in self.columns if c.startswith(PARAM_PREFIX)]

    def runs(self):
        """Run names in order of first appearance."""
        seen = {}
        for r in self.rows:
            seen.setdefault(str(r.get("run", "")), None)
        return list(seen)

    def traces(self):
        seen = {}
        for r in self.rows:
            seen.setdefault(str(r.get("trace", "")), None)
        return list(seen)

    def has(self, column) -> bool:
        """True when the column exists and holds at least one number."""
        return column in self.columns and any(is_number(r.get(column)) for r in self.rows)

    def select(self, run=None, trace=None, layer=None, head=None):
        out = []
        for r in self.rows:
            if run is not None and str(r.get("run")) != run:
                continue
            if trace is not None and str(r.get("trace")) != trace:
                continue
            if layer is not None and r.get("layer") != float(layer):
                continue
            if head is not None and r.get("kv_head") != float(head):
                continue
            out.append(r)
        return out

    def aggregate_rows(self):
        """The per-trace aggregate rows (layer = -1, kv_head = -1), in file order."""
        return self.select(layer=-1, head=-1)

    def run_aggregate(self, run, column):
        """Mean of `column` over the run's per-trace aggregate rows (NaN when none holds a number).

        Falls back to the mean over the run's per-layer aggregates, then over all its rows, when the results
        have no aggregate rows (a partial or hand-made file).
        """
        for rows in (self.select(run=run, layer=-1, head=-1),
                     [r for r in self.select(run=run, head=-1) if r.get("layer") != -1.0],
                     self.select(run=run)):
            values = [r.get(column) for r in rows if is_number(r.get(column))]
            if values:
                return sum(values) / len(values)
        return math.nan

    def run_param(self, run, column):
        """The value of a `param.*` column for a run (first non-empty cell), or None."""
        for r in self.select(run=run):
            v = r.get(column)
            if isinstance(v, str) or is_number(v):
                return v
        return None

    def per_layer(self, run, column):
        """(layers, values): per-layer aggregates (head = -1) of a run, averaged over traces.

        Falls back to the mean over heads when the results have no per-layer aggregate rows.
        """
        by_layer = {}
        rows = [r for r in self.select(run=run, head=-1) if is_number(r.get("layer")) and r["layer"] >= 0]
        if not any(is_number(r.get(column)) for r in rows):
            rows = [r for r in self.select(run=run) if is_number(r.get("layer")) and r["layer"] >= 0
                    and is_number(r.get("kv_head")) and r["kv_head"] >= 0]
        for r in rows:
            if is_number(r.get(column)):
                by_layer.setdefault(int(r["layer"]), []).append(r[column])
        layers = sorted(by_layer)
        return layers, [sum(by_layer[l]) / len(by_layer[l]) for l in layers]

    def layer_head_grid(self, run, column):
        """(layers, heads, grid[layer][head]) of a run's per-head rows, averaged over traces; NaN where absent."""
        cells = {}
        for r in self.select(run=run):
            l, h, v = r.get("layer"), r.get("kv_head"), r.get(column)
            if is_number(l) and is_number(h) and l >= 0 and h >= 0 and is_number(v):
                cells.setdefault((int(l), int(h)), []).append(v)
        layers = sorted({k[0] for k in cells})
        heads = sorted({k[1] for k in cells})
        grid = [[(sum(cells[(l, h)]) / len(cells[(l, h)])) if (l, h) in cells else math.nan for h in heads]
                for l in layers]
        return layers, heads, grid


@dataclass
class Experiment:
    """One results directory."""

    path: str
    name: str
    table: ResultsTable
    config_text: str = ""
    config: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    description: str = ""


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a header row") from None
        rows = []
        for line_no, cells in enumerate(reader, start=2):
            if not cells or all(c.strip() == "" for c in cells):
                continue
            if len(cells) > len(header):
                raise ValueError(f"{path}:{line_no}: {len(cells)} cells for {len(header)} columns")
            cells = cells + [""] * (len(header) - len(cells))
            row = {}
            for name, text in zip(header, cells):
                row[name] = text.strip() if name in ("experiment", "run", "trace") else parse_cell(text)
            rows.append(row)
    return ResultsTable(header, rows)


def _read_jsonl(path):
    columns, rows = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            for k in obj:
                if k not in columns:
                    columns.append(k)
            rows.append({k: (str(v) if k in ("experiment", "run", "trace") else parse_cell(v))
                         for k, v in obj.items()})
    return ResultsTable(columns, rows)


def _load_yaml(text):
    """Parses YAML with PyYAML when it is installed (it is in the project venv); {} otherwise."""
    try:
        import yaml  # optional: only used to read `name`/`description` from config.yaml
    except ImportError:
        return {}
    try:
        data = yaml.safe_load(text)
    except Exception:  # a malformed config must not stop a report
        return {}
    return data if isinstance(data, dict) else {}


def is_results_dir(path) -> bool:
    return os.path.isfile(os.path.join(path, "results.csv")) or os.path.isfile(os.path.join(path, "results.jsonl"))


def load_experiment(path) -> Experiment:
    """Reads a results directory; raises FileNotFoundError naming the directory when it has no results."""
    path = os.path.abspath(path)
    csv_path = os.path.join(path, "results.csv")
    jsonl_path = os.path.join(path, "results.jsonl")
    if os.path.isfile(csv_path):
        table = _read_csv(csv_path)
    elif os.path.isfile(jsonl_path):
        table = _read_jsonl(jsonl_path)
    else:
        raise FileNotFoundError(f"{path}: no results.csv or results.jsonl")
    if OLD_HEAD_COLUMN in table.columns and "kv_head" not in table.columns:
        table.columns = ["kv_head" if c == OLD_HEAD_COLUMN else c for c in table.columns]
        for r in table.rows:
            r["kv_head"] = r.pop(OLD_HEAD_COLUMN, math.nan)
    for col in ("layer", "kv_head"):
        if col not in table.columns:
            raise ValueError(f"{path}: results lack the required column '{col}'")
    config_text, config = "", {}
    cfg_path = os.path.join(path, "config.yaml")
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            config_text = f.read()
        config = _load_yaml(config_text)
    provenance = {}
    prov_path = os.path.join(path, "provenance.json")
    if os.path.isfile(prov_path):
        try:
            with open(prov_path, encoding="utf-8") as f:
                provenance = json.load(f)
        except (OSError, ValueError) as e:
            provenance = {"error": f"unreadable provenance.json: {e}"}
    names = [r.get("experiment") for r in table.rows if r.get("experiment")]
    name = (names[0] if names else None) or config.get("name") or provenance.get("experiment") \
        or os.path.basename(path)
    return Experiment(path=path, name=str(name), table=table, config_text=config_text, config=config,
                      provenance=provenance if isinstance(provenance, dict) else {"provenance": provenance},
                      description=str(config.get("description", "") or ""))


def find_experiments(parent):
    """Results directories directly under `parent` (sorted by name)."""
    out = []
    for entry in sorted(os.listdir(parent)):
        p = os.path.join(parent, entry)
        if os.path.isdir(p) and is_results_dir(p):
            out.append(p)
    return out
