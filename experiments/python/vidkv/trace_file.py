"""Writing a schema-v1 trace (traces/SCHEMA.md) from a recorded model pass, atomically.

    write_trace(path, meta, model_shape, tokens, embeddings, query_positions, keys, values, queries)

The file is written as PATH.partial and renamed to PATH at the end; on any error the partial file is removed,
so PATH is either complete or absent. K/V/queries/embeddings are stored as float16, K/V chunked [1, min(256, T),
head_dim] with maxshape [kv_heads, None, head_dim] (the writer can append decode steps), as
tools/record/record_trace.py's bundled trace does.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np

__all__ = ["write_trace"]


def write_trace(path, attrs: dict, model_attrs: dict, tokens: dict, embeddings, query_positions, keys, values,
                queries) -> Path:
    """attrs: root attributes besides schema/schema_version/created_at/source (model_id, model_family, producer,
    dtype, ... ; strings or numbers). model_attrs: num_layers, num_kv_heads, num_query_heads, head_dim,
    hidden_size, rope. tokens: modality [T] uint8, position [T] int32, frame [T] int32, patch [T, 2] int16,
    ids [T] int32. embeddings: [T, hidden] or None. query_positions: [Q] int32. keys/values: per layer
    [kv_heads, T, head_dim]; queries: per layer [query_heads, Q, head_dim] (numpy or torch, any float dtype)."""
    import h5py

    def np16(x):
        if hasattr(x, "detach"):
            x = x.detach().cpu().float().numpy()
        return np.asarray(x, dtype=np.float32).astype(np.float16)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    T = int(len(tokens["modality"]))
    try:
        with h5py.File(partial, "w") as f:
            a = f.attrs
            a["schema"] = "vidkv.trace"
            a["schema_version"] = np.int32(1)
            a["created_at"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            a["source"] = "model"
            a["dtype"] = "float16"
            for k, v in attrs.items():
                a[k] = v
            m = f.create_group("model")
            for k in ("num_layers", "num_kv_heads", "num_query_heads", "head_dim", "hidden_size"):
                m.attrs[k] = np.int32(model_attrs[k])
            m.attrs["rope"] = model_attrs.get("rope", "post")
            t = f.create_group("tokens")
            t.create_dataset("modality", data=np.asarray(tokens["modality"], dtype=np.uint8))
            t.create_dataset("position", data=np.asarray(tokens["position"], dtype=np.int32))
            t.create_dataset("frame", data=np.asarray(tokens["frame"], dtype=np.int32))
            t.create_dataset("patch", data=np.asarray(tokens["patch"], dtype=np.int16).reshape(T, 2))
            t.create_dataset("ids", data=np.asarray(tokens["ids"], dtype=np.int32))
            if embeddings is not None:
                f.create_dataset("embeddings", data=np16(embeddings))
            qpos = np.asarray(query_positions, dtype=np.int32)
            f.create_group("queries").create_dataset("positions", data=qpos)
            lg = f.create_group("layers")
            for i, (k, v, q) in enumerate(zip(keys, values, queries)):
                k16, v16, q16 = np16(k), np16(v), np16(q)
                kv, _, d = k16.shape
                g = lg.create_group(f"{i:03d}")
                g.create_dataset("key", data=k16, chunks=(1, min(256, T), d), maxshape=(kv, None, d))
                g.create_dataset("value", data=v16, chunks=(1, min(256, T), d), maxshape=(kv, None, d))
                if len(qpos):
                    g.create_dataset("query", data=q16, chunks=(1, len(qpos), d), maxshape=(q16.shape[0], None, d))
        os.replace(partial, out)
    except BaseException:
        if partial.exists():
            partial.unlink()
        raise
    return out
