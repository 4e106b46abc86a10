"""`vidkv validate-metrics`: does trace replay rank codec settings like the live model does?

    python -m vidkv.validate_metrics EXPERIMENT.yaml [--set dotted.path=value]... [--gguf FILE|smollm2]
                                     [--model ID] [--out DIR] [--jobs N]

EXPERIMENT is a `vidkv run` experiment over exactly one recorded trace (`vidkv record`); its sweep is the list of
settings (codec x lifecycle). Every setting runs twice on the same tokens:
  * replay: `vidkv run` of the experiment (the C++ runner, through _vidkv.run_experiment), with the trace's own
    prompt / decode split (experiments/README.md, lifecycle prefill_tokens); its per-trace aggregate row (means over
    layers) gives every trace metric;
  * live: the trace's model (--gguf / --model) prefills the trace's prompt tokens (/tokens/ids before the first
    generated token, modality 3) through vidkv.hf.VidKVCache with the setting's codec and lifecycle (full-precision
    tokens stored in the trace's dtype, residual_dtype, unless the setting names one), then is
    teacher-forced through the trace's generated tokens one decode step at a time (vidkv.live); next_token_kl =
    mean over those positions of KL(p_exact || p_run) in nats against the exact cache (DynamicCache), perplexity of
    the generated tokens, and effective bits of the cache holding prompt + generated tokens.
For every trace metric it prints Spearman's rank correlation (rho, ties ranked by their mean rank) with the live
next-token KL across the settings (the per-trace means of summary.md, and for the error metrics also METRIC@max and
METRIC@rms: the maximum and the root mean square over layers), and per setting the live and replayed effective bits and their difference
(the two runs quantize the same tokens at the same moments, so they agree up to rounding).
Results (OUT, default results/<name>-validate): validation.md (the two tables), validation.json (every number),
replay/ (the `vidkv run` folder) and live/ (the `vidkv live` style rows as results.csv). Needs torch and
transformers (scripts/setup.sh --models).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _vidkv

from vidkv.models import ModelError

__all__ = ["main", "validate", "spearman", "ValidateError", "EXPECTED_SIGN"]


class ValidateError(RuntimeError):
    pass


# +1: the metric grows with the damage (it should rise with live KL); -1: it falls (similarity, bits, SNR).
EXPECTED_SIGN = {"key_snr_db": -1, "value_snr_db": -1, "key_cosine": -1, "value_cosine": -1, "attn_topk_overlap": -1,
                 "key_nominal_bits": -1, "value_nominal_bits": -1, "key_effective_bits": -1,
                 "value_effective_bits": -1, "nominal_bits": -1, "effective_bits": -1, "compression_ratio": 1}
NOT_PREDICTORS = {"seconds"}


def ranks(x) -> np.ndarray:
    """Ranks 1..n of x, ties given the mean of the ranks they span."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return r


def spearman(x, y) -> float:
    """Spearman's rho: the Pearson correlation of the ranks; NaN when either side is constant or has a NaN."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y) or len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


class TraceCase:
    """The recorded prompt of a trace as vidkv.live's helpers use it: prompt ids, reference (generated) ids."""

    class _Inputs:
        def __init__(self, length, modality):
            self.length = length
            self.modality = modality

    def __init__(self, path: str, device):
        import h5py
        import torch

        with h5py.File(path, "r") as f:
            ids = f["tokens/ids"][:].astype(np.int64)
            modality = f["tokens/modality"][:].astype(np.uint8)
            self.embeddings = f["embeddings"][:].astype(np.float32) if "embeddings" in f else None
            self.model_id = str(f.attrs.get("model_id", ""))
            self.dtype = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(
                str(f.attrs.get("dtype", "float16")), "fp16")
        gen = np.nonzero(modality == 3)[0]
        if len(gen) == 0:
            raise ValidateError(f"{path}: no generated tokens (modality 3): record the trace with `vidkv record`")
        prompt = int(gen[0])
        if prompt == 0 or not (modality[prompt:] == 3).all():
            raise ValidateError(f"{path}: generated tokens (modality 3) must follow the prompt to the end of the trace")
        self.prompt_tokens = prompt
        self.reference_ids = ids[prompt:].tolist()
        self.inputs = self._Inputs(prompt, modality[:prompt])
        input_ids = torch.tensor(ids[None, :prompt], device=device)
        self.model_inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if self.embeddings is not None:
            self.embeddings = self.embeddings[:prompt]


def _read_summary(folder: Path) -> dict:
    """run name -> {column: value} of the per-trace aggregate rows (layer = kv_head = -1) of results.csv."""
    out = {}
    with open(folder / "results.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["layer"] == "-1" and row["kv_head"] == "-1":
                out[row["run"]] = row
    return out


def _layer_aggregates(folder: Path, metrics: list[str]) -> dict:
    """run name -> {"METRIC@max": max over layers, "METRIC@rms": root mean square over layers} of the per-layer
    rows (kv_head = -1) of results.csv: other ways to pool the layers than the mean summary.md shows."""
    per = {}
    with open(folder / "results.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["layer"] != "-1" and row["kv_head"] == "-1":
                d = per.setdefault(row["run"], {})
                for m in metrics:
                    v = _num(row.get(m))
                    if math.isfinite(v):
                        d.setdefault(m, []).append(v)
    out = {}
    for run, d in per.items():
        out[run] = {}
        for m, vals in d.items():
            out[run][f"{m}@max"] = max(vals)
            out[run][f"{m}@rms"] = math.sqrt(sum(v * v for v in vals) / len(vals))
    return out


LAYER_POOLED = ("value_rel_error", "attn_out_rel_error", "decode_attn_out_rel_error", "decode_attn_out_rel_value",
                "decode_attn_out_mse", "decode_attn_kl")


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def live_rows(loaded, case: TraceCase, plan: dict) -> list[dict]:
    """Teacher-forced live runs of every setting on the trace's prompt (see the module docstring)."""
    import torch
    from transformers import DynamicCache

    from vidkv.hf import VidKVCache
    from vidkv.live import _append_last_reference, _forced_logits, lifecycle_label

    exact = _forced_logits(loaded, case, DynamicCache(config=loaded.model.config))
    lp_ref = torch.log_softmax(exact, -1)
    ref = torch.tensor(case.reference_ids)
    nll_ref = -lp_ref.gather(1, ref[:, None]).sum().item()
    rows = []
    for run in plan["runs"]:
        t0 = time.time()
        # Full-precision tokens stored as the trace stores them (its dtype, what replay's residual_dtype `data` keeps),
        # not as the live model's float32, so both count the same bytes; an explicit residual_dtype is kept.
        lifecycle = dict(run["lifecycle"])
        lifecycle.setdefault("residual_dtype", case.dtype)
        cache = VidKVCache(run["codec"], lifecycle, modality=case.inputs.modality, embeddings=case.embeddings,
                           seed=int(plan["seed"]))
        lp = torch.log_softmax(_forced_logits(loaded, case, cache), -1)
        n = len(case.reference_ids)
        kl = (lp_ref.exp() * (lp_ref - lp)).sum(-1).clamp_min(0).sum().item() / n
        nll = -lp.gather(1, ref[:, None]).sum().item()
        _append_last_reference(loaded, case, cache)
        bits = cache.bits()
        row = {"run": run["name"], "lifecycle": lifecycle_label(run["lifecycle"]), "next_token_kl": kl,
               "perplexity": math.exp(nll / n), "perplexity_reference": math.exp(nll_ref / n),
               "effective_bits": bits["effective_bits"], "key_effective_bits": bits["key_effective_bits"],
               "value_effective_bits": bits["value_effective_bits"], "seconds": time.time() - t0}
        rows.append(row)
        print(f"[validate-metrics] live {run['name']} ({row['lifecycle']}): perplexity={row['perplexity']:.4g}, "
              f"next_token_kl={kl:.4g}, effective_bits={row['effective_bits']:.4f}", file=sys.stderr)
    return rows


def correlations(live: list[dict], replay: dict, metrics: list[str]) -> list[dict]:
    """Spearman rho of every replay metric with live next_token_kl across the settings, best first (by rho times
    the metric's expected sign)."""
    kl = [r["next_token_kl"] for r in live]
    out = []
    for m in metrics:
        if m in NOT_PREDICTORS:
            continue
        vals = [_num(replay[r["run"]].get(m)) for r in live]
        rho = spearman(vals, kl)
        out.append({"metric": m, "rho": rho, "expected_sign": EXPECTED_SIGN.get(m.split("@")[0], 1),
                    "settings": sum(1 for v in vals if math.isfinite(v))})
    out.sort(key=lambda c: -(c["rho"] * c["expected_sign"]) if math.isfinite(c["rho"]) else math.inf)
    return out


def markdown(live: list[dict], replay: dict, corr: list[dict], trace: str) -> str:
    lines = [f"# Trace metrics vs the live model ({len(live)} settings, trace `{trace}`)", "",
             "Spearman rho of each replayed trace metric with live next-token KL (nats); expected sign + for errors, "
             "- for similarities and bits. METRIC: the mean over layers (summary.md); METRIC@max, METRIC@rms: the "
             "maximum and the root mean square over layers.", "", "| trace metric | rho | expected sign |", "| --- | ---: | :---: |"]
    for c in corr:
        lines.append(f"| `{c['metric']}` | {c['rho']:.3f} | {'+' if c['expected_sign'] > 0 else '-'} |")
    lines += ["", "| setting | lifecycle | live KL | live perplexity | live eff. bits | replay eff. bits | difference |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in live:
        rb = _num(replay[r["run"]].get("effective_bits"))
        lines.append(f"| {r['run']} | {r['lifecycle']} | {r['next_token_kl']:.4f} | {r['perplexity']:.4g} | "
                     f"{r['effective_bits']:.4f} | {rb:.4f} | {r['effective_bits'] - rb:+.4f} |")
    return "\n".join(lines) + "\n"


def validate(experiment: str, overrides: list[str], out: str | None, model: str | None, gguf: str | None,
             jobs: int = 1, loaded=None, device: str = "cpu", dtype: str = "float32", threads: int = 2) -> dict:
    """Runs the validation (module docstring); returns {"correlations", "live", "replay", "out"}."""
    from vidkv.models import load_model

    plan = _vidkv.plan(experiment, list(overrides))
    if plan["model"] is not None or len(plan["traces"]) != 1:
        raise ValidateError(f"{experiment}: validate-metrics needs an experiment over exactly one trace (`traces:`), "
                            f"without a `model:` block; it has {len(plan['traces'])} trace(s)")
    if len(plan["runs"]) < 3:
        raise ValidateError(f"{experiment}: {len(plan['runs'])} setting(s): a rank correlation needs at least 3 "
                            "(list them in `sweep:`)")
    if loaded is None:  # before the replay: the live half needs the model packages
        from vidkv.models import require_model_packages

        require_model_packages("vidkv validate-metrics")
    trace = plan["traces"][0]
    out_dir = Path(out) if out else Path(plan["output"] + "-validate")
    if out_dir.exists():
        raise ValidateError(f"{out_dir}: already exists (choose another --out)")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        replay_dir = tmp / "replay"
        _vidkv.run_experiment(experiment, list(overrides), str(replay_dir), int(jobs))
        replay = _read_summary(replay_dir)
        pooled_names = [m for m in LAYER_POOLED if m in plan["metrics"]]
        for run, extra in _layer_aggregates(replay_dir, pooled_names).items():
            replay.setdefault(run, {}).update(extra)
        candidates = list(plan["metrics"]) + [f"{m}@{how}" for m in pooled_names for how in ("max", "rms")]
        if loaded is None:
            loaded = load_model(model or _model_label(trace), gguf=gguf, device=device, dtype=dtype,
                                threads=threads)
        case = TraceCase(trace, loaded.model.device)
        live = live_rows(loaded, case, plan)
        corr = correlations(live, replay, candidates)
        (tmp / "live").mkdir()
        with open(tmp / "live" / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(live[0]))
            w.writeheader()
            w.writerows(live)
        text = markdown(live, replay, corr, Path(trace).name)
        (tmp / "validation.md").write_text(text)
        result = {"experiment": plan["name"], "trace": trace, "correlations": corr, "live": live,
                  "replay": {r["run"]: {m: _num(replay[r["run"]].get(m)) for m in candidates} for r in live}}
        (tmp / "validation.json").write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(text)
    print(f"[validate-metrics] results: {out_dir}", file=sys.stderr)
    result["out"] = str(out_dir)
    return result


def _model_label(trace: str) -> str:
    import h5py

    with h5py.File(trace, "r") as f:
        return str(f.attrs.get("model_id", ""))



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vidkv validate-metrics", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment")
    ap.add_argument("--set", action="append", default=[], metavar="K=V", help="override a dotted path")
    ap.add_argument("--out", help="results folder (default: the experiment's output + '-validate')")
    ap.add_argument("--model", help="local model folder, or the label of --gguf (default: the trace's model_id)")
    ap.add_argument("--gguf", help="GGUF file to load, or 'smollm2' (the file scripts/setup.sh --models fetches)")
    ap.add_argument("--jobs", type=int, default=1, help="replay cells in parallel")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        validate(args.experiment, args.set, args.out, args.model, args.gguf, args.jobs, device=args.device,
                 dtype=args.dtype, threads=args.threads)
    except (ValidateError, ModelError, _vidkv.Error) as e:
        print(f"vidkv validate-metrics: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
