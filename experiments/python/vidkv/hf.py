"""A Hugging Face transformers cache whose every layer stores K/V through a VidKV codec and lifecycle.

    from vidkv.hf import VidKVCache
    cache = VidKVCache(codec={"preset": "vidkv-k1.5-v1.58"}, lifecycle={"type": "paper", "group": 32, "residual": 128},
                       modality=modality, embeddings=embeddings)
    out = model.generate(**inputs, past_key_values=cache, max_new_tokens=32)
    cache.bits()     # {"key_effective_bits": ..., "effective_bits": ..., ...} from the packed layouts

It follows the public Cache / cache-layer API of transformers 5.x (`transformers.cache_utils.Cache` holding one
`CacheLayerMixin` per decoder layer); nothing in transformers is patched. Each layer keeps one `_vidkv.LayerCache`
per batch item: the same C++ codec and lifecycle (core/cache_lifecycle.h) that trace replay uses.

Semantics (docs/algorithms.md section 5):
  * the first `update` of a layer is the prefill: its K/V are appended to the LayerCache (which quantizes
    N - N mod G tokens, or per the lifecycle) but the call returns the exact inputs, so prefill attention and the
    first generated token never see quantization;
  * every later `update` (a decode step, or a teacher-forced token) appends its tokens, then returns the cache as
    the model reads it: dequantized blocks followed by the full-precision residual, materialized by the
    LayerCache. The residual keeps the model's own dtype (lifecycle residual_dtype data, the default); an explicit
    residual_dtype that cannot hold a value (fp16 for a bf16 model's 1.2e5) raises vidkv.ValueError naming the
    layer, KV head, token and channel, and non-finite states raise vidkv.ValueError naming the layer.

Tensors: key/value states arrive as [batch, kv_heads, tokens, head_dim] of the model's dtype on the model's device.
On a CUDA model the cache lives there: each LayerCache encodes on the GPU with the CUDA kernels (on the model's
current stream), holds only packed bytes plus the full-precision residual window, and each decode step dequantizes
one layer into transient tensors for that layer's attention (no host copy, no persistent full-precision copy). On a
CPU model the same runs on the host. `cache.memory()` reports the bytes held.

Side data for token protectors (per prefill token, as in the trace schema): `modality` [T] or [batch, T] uint8
(0 system/prefix text, 1 visual, 2 query text, 3 generated) and `embeddings` [T, hidden] or [batch, T, hidden]
(the LLM input embeddings). Tokens appended after the prefill are marked generated (3).
"""
from __future__ import annotations

import numpy as np
import torch
from transformers.cache_utils import Cache, CacheLayerMixin

import _vidkv

__all__ = ["VidKVCache", "VidKVLayer", "codec_needs_question", "semantic_protectors", "resolve_codec"]

MODALITY_QUERY_TEXT = 2


def resolve_codec(codec: dict) -> dict:
    """{"key": block, "value": block} with presets expanded, as the C++ resolves them (scalars as YAML text)."""
    import yaml

    return {side: yaml.safe_load(c.config) for side, c in _vidkv.codec(dict(codec)).items()}


def semantic_protectors(codec: dict) -> list[str]:
    """Names ('semantic_embedding', ...) of the token protectors in a codec dict (presets resolved) that score
    tokens against the query text (modality 2), found anywhere in the nested blocks."""
    found: list[str] = []
    codec = resolve_codec(codec)

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "protector" and isinstance(v, dict) and str(v.get("type", "")).startswith("semantic"):
                    found.append(str(v["type"]))
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(codec)
    return found


def codec_needs_question(codec: dict) -> bool:
    """True when a token protector of the (resolved) codec needs query-text tokens (modality 2)."""
    return bool(semantic_protectors(codec))


_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def _as_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32 if dtype == np.float32 else torch.int64).numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def _per_item(x, batch: int, tokens: int, name: str, dtype, rank_single: int):
    """Split side data [T(, hidden)] or [batch, T(, hidden)] into one array per batch item."""
    if x is None:
        return [None] * batch
    arr = _as_numpy(x, dtype)
    if arr.ndim == rank_single:
        arr = np.broadcast_to(arr, (batch,) + arr.shape)
    if arr.ndim != rank_single + 1 or arr.shape[0] != batch or arr.shape[1] != tokens:
        want = "[T]" if rank_single == 1 else "[T, hidden]"
        raise _vidkv.ShapeError(
            f"VidKVCache: {name} has shape {list(arr.shape)}, but the prefill holds batch {batch} x {tokens} tokens "
            f"(expected {want} or [batch, ...] with T = {tokens})")
    return [np.ascontiguousarray(arr[b]) for b in range(batch)]


class VidKVLayer(CacheLayerMixin):
    """One decoder layer's cache: a `_vidkv.LayerCache` per batch item.

    No full-precision K/V are kept: the packed blocks and the residual window live in the LayerCaches (on the model's
    device), and each decode step dequantizes the layer into tensors that only the attention call holds."""

    is_compileable = False
    is_sliding = False
    is_croppable = False

    def __init__(self, owner: "VidKVCache", layer_idx: int):
        super().__init__()
        self.owner = owner
        self.layer_idx = layer_idx
        self.caches: list = []
        self.cumulative_length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, dim = key_states.shape
        if value_states.shape[:2] != key_states.shape[:2] or value_states.shape[-1] != dim:
            raise _vidkv.ShapeError(
                f"VidKVCache layer {self.layer_idx}: key states {list(key_states.shape)} and value states "
                f"{list(value_states.shape)} differ in batch, heads or head_dim; the codec needs equal shapes")
        # The model's dtype: lifecycle residual_dtype data (the default) keeps residual tokens in it, exactly.
        dtype = _DTYPE_NAMES.get(key_states.dtype, "fp32")
        device, stream = "cpu", 0
        if key_states.device.type == "cuda":  # packed blocks and residual on the model's GPU, on its current stream
            index = key_states.device.index if key_states.device.index is not None else torch.cuda.current_device()
            device, stream = f"cuda:{index}", torch.cuda.current_stream(key_states.device).cuda_stream
        self.caches = [
            _vidkv.LayerCache(self.owner.codec, self.owner.lifecycle, heads, dim, self.layer_idx, self.owner.seed, dtype,
                              device, stream)
            for _ in range(batch)
        ]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Appends key/value states [batch, kv_heads, t, head_dim]; returns the K/V attention must use."""
        prefill = not self.is_initialized
        if prefill:
            self.lazy_initialization(key_states, value_states)
        batch, _, t, _ = key_states.shape
        if batch != len(self.caches):
            raise _vidkv.ShapeError(f"VidKVCache layer {self.layer_idx}: batch changed from {len(self.caches)} to "
                                    f"{batch} (beam search and batch reshuffles are not supported)")
        ks, vs = key_states.detach(), value_states.detach()
        if prefill:
            modality = _per_item(self.owner.modality, batch, t, "modality", np.uint8, 1)
            embeddings = _per_item(self.owner.embeddings, batch, t, "embeddings", np.float32, 2)
            for b, cache in enumerate(self.caches):
                cache.append_tensors(ks[b].contiguous(), vs[b].contiguous(), modality=modality[b],
                                     embeddings=embeddings[b])
            self.cumulative_length = t
            # Prefill attention uses the exact K/V (algorithms.md section 5); the cache keeps no reference to them.
            return key_states, value_states
        for b, cache in enumerate(self.caches):
            cache.append_tensors(ks[b].contiguous(), vs[b].contiguous())
        self.cumulative_length += t
        # The layer's K/V as the model reads them, dequantized into buffers that live only while this layer attends
        # (nothing here keeps a reference): the only full-precision copy is this transient one.
        shape = (batch, key_states.shape[1], self.cumulative_length, key_states.shape[3])
        keys = torch.empty(shape, dtype=self.dtype, device=self.device)
        values = torch.empty(shape, dtype=self.dtype, device=self.device)
        for b, cache in enumerate(self.caches):
            cache.materialize_into(keys[b], values[b])
        return keys, values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.caches = []
        self.cumulative_length = 0
        self.is_initialized = False

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("VidKVCache does not support beam search (use greedy or sampling decoding)")

    def layouts(self):
        """[(key Layout, value Layout)] of every batch item: the bytes stored right now."""
        return [(c.key_layout(), c.value_layout()) for c in self.caches]


class VidKVCache(Cache):
    """A transformers Cache routing every layer's K/V through a VidKV codec and cache lifecycle.

    codec:      the same dict as a YAML `codec:` block: {"preset": NAME} or {"key": {...}, "value": {...}}.
    lifecycle:  the `lifecycle:` block, e.g. {"type": "paper", "group": 32, "residual": 128}; default paper.
    modality:   per prefill token [T] or [batch, T], values 0..3 (numpy or torch); default: all 0.
    embeddings: LLM input embeddings of the prefill tokens [T, hidden] or [batch, T, hidden] (semantic_embedding).
    seed:       seed of randomised plugins (each layer gets the same seed and its own layer index).
    The codec and lifecycle are validated here (unknown keys or bad values raise vidkv.ConfigError)."""

    def __init__(self, codec: dict, lifecycle: dict | None = None, modality=None, embeddings=None, seed: int = 0):
        self.codec = dict(codec)
        self.lifecycle = dict(lifecycle) if lifecycle is not None else {"type": "paper"}
        self.modality = modality
        self.embeddings = embeddings
        self.seed = int(seed)
        # Fail now, not at the first forward: build one throwaway layer cache (parses codec and lifecycle).
        _vidkv.LayerCache(self.codec, self.lifecycle, 1, 32, 0, self.seed)
        if modality is not None and codec_needs_question(self.codec):
            if not (_as_numpy(modality, np.uint8) == MODALITY_QUERY_TEXT).any():
                raise _vidkv.ConfigError(
                    f"VidKVCache: the codec's token protector {semantic_protectors(self.codec)[0]} scores tokens "
                    "against the query text, but no prefill token has modality 2 (query text): mark the question span")
        super().__init__(layer_class_to_replicate=self._new_layer)

    def _new_layer(self) -> VidKVLayer:
        return VidKVLayer(self, len(self.layers))

    def bits(self) -> dict:
        """Bits per stored element right now, over every layer and batch item, from the exact packed layouts:
        key_/value_nominal_bits, key_/value_effective_bits (metadata and fp16 residual included), their
        element-weighted means nominal_bits / effective_bits, and compression_ratio = 16 / effective_bits."""
        acc = {"key": [0, 0.0, 0], "value": [0, 0.0, 0]}  # bytes, nominal bits * elements, elements
        for layer in self.layers:
            for kl, vl in layer.layouts():
                for side, lay in (("key", kl), ("value", vl)):
                    acc[side][0] += lay.bytes
                    acc[side][1] += lay.nominal_bits * lay.elements
                    acc[side][2] += lay.elements
        out = {}
        for side, (nbytes, nominal, elements) in acc.items():
            if elements == 0:
                raise _vidkv.Error("VidKVCache.bits(): the cache is empty (run the model first)")
            out[f"{side}_nominal_bits"] = nominal / elements
            out[f"{side}_effective_bits"] = 8.0 * nbytes / elements
        total = acc["key"][2] + acc["value"][2]
        out["nominal_bits"] = (acc["key"][1] + acc["value"][1]) / total
        out["effective_bits"] = 8.0 * (acc["key"][0] + acc["value"][0]) / total
        out["compression_ratio"] = 16.0 / out["effective_bits"]
        return out

    def memory(self) -> dict:
        """Bytes the cache holds now, per device: {device: {"packed_bytes", "residual_bytes", "total_bytes"}} summed
        over layers and batch items (allocations as requested; the caching allocator's slack is not included)."""
        out: dict = {}
        for layer in self.layers:
            for cache in getattr(layer, "caches", []):
                m = cache.memory()
                acc = out.setdefault(m["device"], {"packed_bytes": 0, "residual_bytes": 0, "total_bytes": 0})
                for k in acc:
                    acc[k] += m[k]
        return out
