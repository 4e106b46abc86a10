#!/usr/bin/env python3
"""Verify a recorded SmolLM2 trace (schema v1) against the model.

Checks: the schema's attributes, dataset names, shapes, dtypes and chunking; then re-loads the model, runs the
recorded token ids through one forward pass and compares the recorded K/V (float16) with the model's KV cache
(max abs diff after rounding the model's values to float16, and against float32), the recorded query states with
the model's post-RoPE queries, the embeddings with the model's input embeddings, and the attention probabilities
rebuilt from the recorded q and k with the model's (output_attentions=True, eager).

Usage: .venv/bin/python tools/record/check_trace.py traces/data/smollm2-135m-longdoc.h5 [--gguf PATH]
(after scripts/setup.sh --models; the model pass is vidkv.capture's, as in `vidkv record`).
Exit status 0 when every check passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _sub in ("experiments/python", "build/python"):
    sys.path.insert(0, str(ROOT / _sub))
from vidkv.capture import capture_pass  # noqa: E402
from vidkv.models import ModelError, load_model, locate_smollm2_gguf, sha256_file  # noqa: E402


def attention_from(q, k, positions, scaling, group):
    """softmax(q k^T * scaling) with the causal mask, for query rows `positions`. q [hq, Q, d], k [kv, T, d]."""
    import torch
    k_rep = k.repeat_interleave(group, dim=0)  # [hq, T, d]
    logits = torch.matmul(q, k_rep.transpose(1, 2)) * scaling  # [hq, Q, T]
    T = k.shape[1]
    mask = torch.arange(T).unsqueeze(0) > positions.unsqueeze(1)  # [Q, T]
    logits = logits.masked_fill(mask.unsqueeze(0), float("-inf"))
    return torch.softmax(logits, dim=-1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-tol", type=float, default=0.0,
                    help="allowed max abs diff between recorded K/V and the model's K/V rounded to fp16")
    ap.add_argument("--attn-tol", type=float, default=5e-3,
                    help="allowed max abs diff of attention probabilities rebuilt from the recorded fp16 q/k")
    args = ap.parse_args(argv)

    import h5py
    import numpy as np
    import torch

    failures: list[str] = []
    report: dict = {}

    def need(cond, msg):
        if not cond:
            failures.append(msg)

    f = h5py.File(args.trace, "r")
    a = f.attrs
    for key in ("schema", "schema_version", "producer", "created_at", "source", "model_id", "model_family", "dtype",
                "model_file_sha256", "prompt", "notes"):
        need(key in a, f"root attribute {key} missing")
    need(a.get("schema") == "vidkv.trace", "schema != vidkv.trace")
    need(a.get("schema_version") == 1 and a["schema_version"].dtype == np.int32, "schema_version is not int32 1")
    need(a.get("source") == "model" and a.get("dtype") == "float16", "source/dtype")
    m = f["model"].attrs
    L, KV, HQ, D, H = (int(m[k]) for k in ("num_layers", "num_kv_heads", "num_query_heads", "head_dim",
                                           "hidden_size"))
    for k in ("num_layers", "num_kv_heads", "num_query_heads", "head_dim", "hidden_size"):
        need(m[k].dtype == np.int32, f"/model {k} is not int32")
    need(m.get("rope") == "post", "/model rope != post")
    ids = f["tokens/ids"][:]
    T = ids.shape[0]
    mod = f["tokens/modality"][:]
    qpos = f["queries/positions"][:]
    Q = qpos.shape[0]
    expect = {"tokens/modality": ((T,), np.uint8), "tokens/position": ((T,), np.int32),
              "tokens/frame": ((T,), np.int32), "tokens/patch": ((T, 2), np.int16), "tokens/ids": ((T,), np.int32),
              "embeddings": ((T, H), np.float16), "queries/positions": ((Q,), np.int32)}
    for i in range(L):
        expect[f"layers/{i:03d}/key"] = ((KV, T, D), np.float16)
        expect[f"layers/{i:03d}/value"] = ((KV, T, D), np.float16)
        expect[f"layers/{i:03d}/query"] = ((HQ, Q, D), np.float16)
    for name, (shape, dt) in expect.items():
        if name not in f:
            failures.append(f"/{name} missing")
            continue
        ds = f[name]
        need(ds.shape == shape and ds.dtype == dt, f"/{name}: shape {ds.shape} dtype {ds.dtype}, want {shape} {dt}")
        if name.endswith("/key") or name.endswith("/value"):
            need(ds.chunks == (1, min(256, T), D) and ds.maxshape == (KV, None, D),
                 f"/{name}: chunks {ds.chunks} maxshape {ds.maxshape}")
    need((f["tokens/position"][:] == np.arange(T)).all(), "positions are not 0..T-1")
    need((f["tokens/frame"][:] == -1).all() and (f["tokens/patch"][:] == -1).all(), "frame/patch not all -1")
    need(set(np.unique(mod).tolist()) <= {0, 2, 3}, "unexpected modality values for a text-only trace")
    need(bool((mod[qpos] >= 2).all()), "a query position is not a question or generated token")
    report["T"], report["Q"] = int(T), int(Q)
    report["modality_counts"] = {str(k): int((mod == k).sum()) for k in range(4)}

    gguf = locate_smollm2_gguf(args.gguf)
    sha = sha256_file(gguf)
    need(sha == a["model_file_sha256"], f"GGUF sha256 {sha} differs from the trace's {a['model_file_sha256']}")
    loaded = load_model("HuggingFaceTB/SmolLM2-135M-Instruct", gguf=str(gguf), threads=args.threads)
    tok, model = loaded.tokenizer, loaded.model
    cfg = model.config
    need((L, KV, HQ, D, H) == (cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.num_attention_heads,
                               cfg.head_dim, cfg.hidden_size), "/model attributes differ from the model config")
    prompt_sha = hashlib.sha256(a["prompt"].encode("utf-8")).hexdigest()
    if "prompt_sha256" in a:
        need(prompt_sha == a["prompt_sha256"], "prompt_sha256 mismatch")
    n_prompt = int((mod != 3).sum())
    need(tok(a["prompt"], add_special_tokens=False)["input_ids"] == ids[:n_prompt].tolist(),
         "the prompt attribute does not tokenize to the recorded prompt ids")

    ids_t = torch.from_numpy(ids).long()[None]
    cap = capture_pass(loaded, {"input_ids": ids_t, "attention_mask": torch.ones_like(ids_t)}, attentions=True)
    keys, values, queries, attns = cap.keys, cap.values, cap.queries, cap.attentions
    kv16 = kv32 = q16 = 0.0
    attn_err = 0.0
    pos_t = torch.tensor(qpos, dtype=torch.long)
    group = HQ // KV
    scaling = model.model.layers[0].self_attn.scaling
    for i in range(L):
        g = f[f"layers/{i:03d}"]
        rk = torch.from_numpy(g["key"][:]).float()
        rv = torch.from_numpy(g["value"][:]).float()
        rq = torch.from_numpy(g["query"][:]).float()
        kv16 = max(kv16, (rk - keys[i].half().float()).abs().max().item(),
                   (rv - values[i].half().float()).abs().max().item())
        kv32 = max(kv32, (rk - keys[i]).abs().max().item(), (rv - values[i]).abs().max().item())
        q16 = max(q16, (rq - queries[i][:, pos_t].half().float()).abs().max().item())
        p = attention_from(rq, rk, pos_t, scaling, group)
        attn_err = max(attn_err, (p - attns[i][:, pos_t]).abs().max().item())
    with torch.no_grad():
        emb = model.get_input_embeddings()(torch.from_numpy(ids).long()).half().float()
    emb_err = (torch.from_numpy(f["embeddings"][:]).float() - emb).abs().max().item()
    report.update({"kv_max_abs_diff_vs_model_fp16": kv16, "kv_max_abs_diff_vs_model_fp32": kv32,
                   "query_max_abs_diff_vs_model_fp16": q16, "embedding_max_abs_diff_fp16": emb_err,
                   "attention_repro_max_abs_err_from_file": attn_err})
    need(kv16 <= args.kv_tol, f"K/V differ from the model's cache by {kv16} > {args.kv_tol}")
    need(q16 <= args.kv_tol, f"queries differ from the model's by {q16} > {args.kv_tol}")
    need(emb_err <= args.kv_tol, f"embeddings differ by {emb_err}")
    need(attn_err <= args.attn_tol, f"attention reproduction error {attn_err} > {args.attn_tol}")
    report["failures"] = failures
    report["ok"] = not failures
    print(json.dumps(report, indent=1))
    return 0 if not failures else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ModelError as e:
        print(f"check_trace.py: error: {e}", file=sys.stderr)
        sys.exit(2)
