"""Reading a VidKV trace (HDF5 schema v1, see traces/SCHEMA.md) one layer at a time.

Layout: /layers/NNN/key and /layers/NNN/value are [kv_heads, T, head_dim] in the root `dtype`
(float16, float32, or bfloat16 stored as uint16/int16 raw bits). Token metadata lives under /tokens;
/embeddings [T, hidden] and /queries/positions [Q] are optional.
"""

from __future__ import annotations

import numpy as np

MODALITY_NAMES = {0: "system text", 1: "visual", 2: "query text", 3: "generated"}
MODALITY_VISUAL = 1
MODALITY_QUERY_TEXT = 2


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 raw bits (uint16 or int16) -> float32: the bits are the top half of a float32."""
    return (bits.astype(np.uint16).astype(np.uint32) << 16).view(np.float32)


class Trace:
    """An open trace file. Use as a context manager; arrays are returned as float32 numpy arrays."""

    def __init__(self, path):
        import h5py

        self.path = str(path)
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:  # h5py's message does not name the file ("Unable to synchronously open file (...)")
            raise OSError(f"{self.path}: {e}") from e
        attrs = self._f.attrs
        schema = _attr_str(attrs.get("schema", ""))
        if schema != "vidkv.trace":
            self._f.close()
            raise ValueError(f"{self.path}: root attribute schema is '{schema}', expected 'vidkv.trace'")
        self.schema_version = int(attrs.get("schema_version", 0))
        self.source = _attr_str(attrs.get("source", ""))
        self.model_id = _attr_str(attrs.get("model_id", ""))
        self.dtype = _attr_str(attrs.get("dtype", "float32"))
        m = self._f["model"].attrs if "model" in self._f else {}
        self.num_kv_heads = int(m.get("num_kv_heads", 0))
        self.head_dim = int(m.get("head_dim", 0))
        self.layer_names = sorted(self._f["layers"].keys()) if "layers" in self._f else []
        self.num_layers = int(m.get("num_layers", len(self.layer_names)))
        self.modality = np.asarray(self._f["tokens/modality"][()], dtype=np.int64)
        self.frame = _optional(self._f, "tokens/frame", np.int64)
        self.patch = _optional(self._f, "tokens/patch", np.int64)
        self.position = _optional(self._f, "tokens/position", np.int64)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._f.close()

    @property
    def num_tokens(self) -> int:
        return int(self.modality.shape[0])

    @property
    def layers(self):
        """Layer indices present in the file."""
        return [int(n) for n in self.layer_names]

    @property
    def has_embeddings(self) -> bool:
        return "embeddings" in self._f

    def embeddings(self) -> np.ndarray:
        return self._decode(self._f["embeddings"][()])

    def query_positions(self):
        return _optional(self._f, "queries/positions", np.int64)

    def _decode(self, raw) -> np.ndarray:
        if self.dtype == "bfloat16" and raw.dtype in (np.uint16, np.int16):
            return bfloat16_bits_to_float32(raw)
        return np.asarray(raw, dtype=np.float32)

    def layer(self, layer: int, kind: str = "key") -> np.ndarray:
        """[kv_heads, T, head_dim] float32 of one layer; kind is 'key', 'value' or 'query'."""
        name = f"layers/{layer:03d}/{kind}"
        if name not in self._f:
            raise KeyError(f"{self.path}: no dataset /{name}")
        data = self._f[name][()]
        if data.ndim != 3:
            raise ValueError(f"{self.path}: /{name}: expected rank 3 [head, token, dim], got rank {data.ndim}")
        return self._decode(data)


def _attr_str(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr_str(v[()])
    return str(v)


def _optional(f, name, dtype):
    return np.asarray(f[name][()], dtype=dtype) if name in f else None


def semantic_scores(embeddings: np.ndarray, modality: np.ndarray):
    """The release's STP score (algorithms.md 4.1): for every visual token i, mean over the query-text tokens j
    of the raw dot product <e_i, e_j>. Returns (visual token indices, scores), or None without query text."""
    visual = np.flatnonzero(modality == MODALITY_VISUAL)
    query = np.flatnonzero(modality == MODALITY_QUERY_TEXT)
    if visual.size == 0 or query.size == 0:
        return None
    e = embeddings.astype(np.float64)
    scores = (e[visual] @ e[query].T).mean(axis=1)
    return visual, scores


def protected_tokens(visual: np.ndarray, scores: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """Token indices of the top `fraction` of visual tokens by score (ties broken by position)."""
    count = int(fraction * visual.size)  # as the channel count k = int(D * ratio): truncation
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")[:count]
    return np.sort(visual[order])
