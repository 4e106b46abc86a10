"""Shared fixtures of the analysis tests: a tiny trace (HDF5 schema v1) and tiny results directories, both
written here with h5py/csv so the tests need no C++ build. The test modules import the fixtures from here;
conftest.py (shared with the other Python suites) puts <repo>/analysis on sys.path."""

import csv
import json
import math
import os
import sys
import warnings

import numpy as np
import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if os.path.join(REPO, "analysis") not in sys.path:  # also importable without conftest.py
    sys.path.insert(0, os.path.join(REPO, "analysis"))

# matplotlib 3.9.2 calls pyparsing APIs that newer pyparsing marks deprecated: noise, not our code. The filter
# below covers matplotlib's import during collection; each test module also sets `pytestmark = QUIET_MATPLOTLIB`.
warnings.filterwarnings("ignore", message="'.*' deprecated - use", category=DeprecationWarning)
QUIET_MATPLOTLIB = pytest.mark.filterwarnings("ignore:'.*' deprecated - use:DeprecationWarning")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 2048  # an empty 1x1 or blank figure is far below this; every real plot is above


def assert_valid_png(path):
    """PNG signature, more than 2 KB, and matplotlib reads it back as an RGB(A) image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    assert path and os.path.isfile(path), f"missing plot {path}"
    with open(path, "rb") as f:
        head = f.read(8)
    assert head == PNG_SIGNATURE, f"{path}: not a PNG (starts with {head!r})"
    size = os.path.getsize(path)
    assert size > MIN_PNG_BYTES, f"{path}: only {size} bytes"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4) and img.shape[0] > 50 and img.shape[1] > 50, img.shape
    assert float(img[..., :3].std()) > 0.01, f"{path}: blank image"


# --- tiny trace -------------------------------------------------------------------------------------------------

TRACE_LAYERS = 3
TRACE_KV_HEADS = 2
TRACE_QUERY_HEADS = 4
TRACE_HEAD_DIM = 16
TRACE_HIDDEN = 24
FRAMES, PATCH_ROWS, PATCH_COLS = 2, 4, 4
SYSTEM_TOKENS, QUERY_TOKENS, GENERATED_TOKENS = 3, 5, 2
OUTLIER_CHANNELS = (2, 9)  # keys of these channels are scaled x 8: the range selection must find them


def write_trace(path, dtype="float16", embeddings=True, visual=True, seed=0):
    """Writes a trace following schema v1 exactly; returns a dict of what was written (float32 K/V per layer)."""
    import h5py

    rng = np.random.default_rng(seed)
    n_visual = FRAMES * PATCH_ROWS * PATCH_COLS if visual else 0
    modality = np.array([0] * SYSTEM_TOKENS + [1] * n_visual + [2] * QUERY_TOKENS + [3] * GENERATED_TOKENS,
                        dtype=np.uint8)
    t = modality.size
    frame = np.full(t, -1, dtype=np.int32)
    patch = np.full((t, 2), -1, dtype=np.int16)
    if visual:
        vis = np.arange(SYSTEM_TOKENS, SYSTEM_TOKENS + n_visual)
        local = np.arange(n_visual)
        frame[vis] = local // (PATCH_ROWS * PATCH_COLS)
        patch[vis, 0] = (local % (PATCH_ROWS * PATCH_COLS)) // PATCH_COLS
        patch[vis, 1] = local % PATCH_COLS
    q_pos = np.flatnonzero(modality >= 2).astype(np.int32)[:4]
    written = {"modality": modality, "keys": [], "values": []}
    with h5py.File(path, "w") as f:
        f.attrs.update({"schema": "vidkv.trace", "schema_version": 1, "producer": "tests/python",
                        "created_at": "2026-11-22T00:00:00Z", "source": "synthetic", "model_id": "tiny",
                        "model_family": "test", "dtype": dtype})
        m = f.create_group("model")
        m.attrs.update({"num_layers": TRACE_LAYERS, "num_kv_heads": TRACE_KV_HEADS,
                        "num_query_heads": TRACE_QUERY_HEADS, "head_dim": TRACE_HEAD_DIM,
                        "hidden_size": TRACE_HIDDEN, "rope": "post"})
        tok = f.create_group("tokens")
        tok.create_dataset("modality", data=modality)
        tok.create_dataset("position", data=np.arange(t, dtype=np.int32))
        tok.create_dataset("frame", data=frame)
        tok.create_dataset("patch", data=patch)
        if embeddings:
            e = rng.normal(size=(t, TRACE_HIDDEN)).astype(np.float32)
            f.create_dataset("embeddings", data=_encode(e, dtype))
            written["embeddings"] = _decode_like(e, dtype)
        f.create_group("queries").create_dataset("positions", data=q_pos)
        for layer in range(TRACE_LAYERS):
            k = rng.normal(size=(TRACE_KV_HEADS, t, TRACE_HEAD_DIM)).astype(np.float32)
            k[:, :, list(OUTLIER_CHANNELS)] *= 8.0
            v = rng.normal(size=(TRACE_KV_HEADS, t, TRACE_HEAD_DIM)).astype(np.float32)
            q = rng.normal(size=(TRACE_QUERY_HEADS, q_pos.size, TRACE_HEAD_DIM)).astype(np.float32)
            g = f.create_group(f"layers/{layer:03d}")
            g.create_dataset("key", data=_encode(k, dtype))
            g.create_dataset("value", data=_encode(v, dtype))
            g.create_dataset("query", data=_encode(q, dtype))
            written["keys"].append(_decode_like(k, dtype))
            written["values"].append(_decode_like(v, dtype))
    return written


def _encode(x, dtype):
    if dtype == "float16":
        return x.astype(np.float16)
    if dtype == "float32":
        return x.astype(np.float32)
    if dtype == "bfloat16":  # top 16 bits of the float32 (truncation), stored as uint16 raw bits
        return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    raise ValueError(dtype)


def _decode_like(x, dtype):
    if dtype == "bfloat16":
        return (_encode(x, dtype).astype(np.uint32) << 16).view(np.float32)
    return _encode(x, dtype).astype(np.float32)


@pytest.fixture
def tiny_trace(tmp_path):
    path = tmp_path / "tiny.h5"
    write_trace(str(path))
    return str(path)


# --- tiny results directories -----------------------------------------------------------------------------------

METRICS = ("key_rel_error", "value_rel_error", "key_mse", "value_mse", "attn_kl", "attn_out_rel_error",
           "key_nominal_bits", "value_nominal_bits", "key_effective_bits", "value_effective_bits",
           "nominal_bits", "effective_bits", "compression_ratio", "seconds")


def write_results(directory, name, runs, traces=("tiny.h5",), layers=3, heads=2, seed=0, extra_column=True,
                  write_jsonl=True, head_column="kv_head"):
    """Writes a results directory like `vidkv run`: runs is a list of (run name, {param column: value},
    key bits, value bits). Per-head rows are random; aggregates are means, as the C++ side writes them.
    `attn_topk_overlap` is absent on purpose and `seconds` is empty except in the aggregates (robustness).
    head_column: "kv_head", or "head" for results written before the column was renamed.
    Returns the rows written."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    params = sorted({p for _, ps, _, _ in runs for p in ps})
    columns = ["experiment", "run", "trace", "layer", head_column] + list(METRICS) + \
        (["extra_col"] if extra_column else []) + params
    rows = []
    for run, ps, kb, vb in runs:
        for trace in traces:
            per_layer = []
            for layer in range(layers):
                per_head = []
                for head in range(heads):
                    scale = 1.0 / (kb + vb)
                    r = {"key_rel_error": scale * rng.uniform(0.5, 1.5), "value_rel_error": scale * rng.uniform(0.5, 1.5),
                         "key_mse": rng.uniform(0.01, 0.1), "value_mse": rng.uniform(0.01, 0.1),
                         "attn_kl": scale * rng.uniform(0.1, 0.3), "attn_out_rel_error": scale * rng.uniform(0.5, 1),
                         "key_nominal_bits": kb, "value_nominal_bits": vb, "key_effective_bits": kb + 0.5,
                         "value_effective_bits": vb + 0.5, "nominal_bits": (kb + vb) / 2,
                         "effective_bits": (kb + vb) / 2 + 0.5, "compression_ratio": 16 / ((kb + vb) / 2 + 0.5),
                         "seconds": math.nan}
                    per_head.append(r)
                    rows.append(_row(name, run, trace, layer, head, r, ps, head_column))
                agg = _mean(per_head)
                per_layer.append(agg)
                rows.append(_row(name, run, trace, layer, -1, agg, ps, head_column))
            agg = _mean(per_layer)
            agg["seconds"] = rng.uniform(0.1, 2.0)
            rows.append(_row(name, run, trace, -1, -1, agg, ps, head_column))
    with open(os.path.join(directory, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in columns])
    if write_jsonl:
        with open(os.path.join(directory, "results.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps({c: (None if isinstance(r.get(c), float) and math.isnan(r[c]) else r.get(c))
                                    for c in columns}) + "\n")
    with open(os.path.join(directory, "config.yaml"), "w") as f:
        f.write(f"name: {name}\ndescription: \"tiny test experiment {name}\"\nseed: 42\n"
                "codec: {preset: vidkv-k1.5-v1.58}\n")
    with open(os.path.join(directory, "provenance.json"), "w") as f:
        json.dump({"experiment": name, "git_revision": "0123456789ab", "build": "vidkv 0.1.0 | Release",
                   "seed": 42, "command_line": f"vidkv run {name}.yaml", "runs": [{"name": r[0]} for r in runs],
                   "traces": list(traces)}, f)
    return columns, rows


def _row(name, run, trace, layer, head, metrics, params, head_column="kv_head"):
    r = {"experiment": name, "run": run, "trace": trace, "layer": layer, head_column: head, "extra_col": "x"}
    r.update(metrics)
    r.update(params)
    return r


def _mean(rows):
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


SWEEP_RUNS = [(f"codec.value.gamma={g}", {"param.codec.value.gamma": g}, 1.5, 1.58) for g in (0.3, 0.5, 0.7, 1.0)]
NAMED_RUNS = [("KIVI 2/2 (K-C V-T)", {"param.codec": "{preset: kivi-2}"}, 2, 2),
              ("VidKV 1.5/1.58", {"param.codec": "{preset: vidkv-k1.5-v1.58}"}, 1.5, 1.58),
              ("VidKV 1.25/1.58 | bars", {"param.codec": "{preset: vidkv-k1.25-v1.58}"}, 1.25, 1.58)]


@pytest.fixture
def sweep_results(tmp_path):
    d = tmp_path / "fig7-gamma"
    write_results(str(d), "fig7-gamma", SWEEP_RUNS)
    return str(d)


@pytest.fixture
def named_results(tmp_path):
    d = tmp_path / "table2-main"
    write_results(str(d), "table2-main", NAMED_RUNS, traces=("a.h5", "b.h5"))
    return str(d)

