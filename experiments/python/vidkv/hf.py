"""A Hugging Face transformers cache whose every layer stores K/V through a VidKV codec and lifecycle.

    from vidkv.hf import VidKVCache
    cache = VidKVCache(codec={"preset": "vidkv-k1.5-v1.58"}, lifecycle={"type": "paper", "group": 32, "residual": 128},
                       modality=modality, embeddings=embeddings, attention_mask=inputs["attention_mask"])
    out = model.generate(**inputs, past_key_values=cache, max_new_tokens=32)
    cache.bits()     # {"key_effective_bits": ..., "effective_bits": ..., ...} from the packed layouts
    cache.memory()   # {"cpu": {"packed_bytes": ..., "residual_bytes": ..., ...}} bytes held per device

It follows the public Cache / cache-layer API of transformers 5.x (`transformers.cache_utils.Cache` holding one
`CacheLayerMixin` per decoder layer); nothing in transformers is patched. Each layer keeps one `_vidkv.LayerCache`
per batch row: the same C++ codec and lifecycle (core/cache_lifecycle.h) that trace replay uses.

Semantics (docs/algorithms.md section 5):
  * the first `update` of a layer is the prefill: it returns the exact inputs (prefill attention and the first
    generated token never see quantization) and keeps them, full precision, in `layer.keys` / `layer.values`
    until the next layer's prefill `update` (or this layer's next `update`, `bits()`, `memory()`, a crop): only
    then are they encoded. That is the one place a full-precision copy lives (one layer's prefill at a time), and
    it is what lets a kvpress press (which rewrites `cache.layers[i].keys / values` right after layer i's prefill
    attention) decide what gets quantized: what the press keeps is what is encoded.
  * every later `update` (a decode step, or a teacher-forced token) appends its tokens, then returns the cache as
    the model reads it: dequantized blocks followed by the full-precision residual, materialized into fresh
    tensors that live only while the layer attends (`layer.keys` / `layer.values` are None between steps). With
    attention="fused" a step of 1 to 8 new tokens per row materializes nothing: it returns zero-stride placeholders
    and the attention reads the packed cache (vidkv.fused_attention).
  * the residual keeps the model's own dtype (lifecycle residual_dtype data, the default); an explicit
    residual_dtype that cannot hold a value raises vidkv.ValueError naming layer, KV head, token and channel.

Padded batches: transformers does not hand the attention mask to `Cache.update`, so pass it to the cache
(`attention_mask=` [batch, T] of the prefill, 1 = real token, 0 = padding; or `cache.attention_mask = ...` before
`generate`). Each row's LayerCache then holds only that row's real tokens: masked positions never enter a group's
statistics, a channel selection or a protector's candidates. The materialized rows are padded back with zeros at
the masked positions (which the model's mask hides), so a row's output does not depend on its pad tokens. Tokens
appended after the prefill are all real (what generate does). A mask whose batch is a divisor of the prefill batch
is repeated row-wise (generate expands inputs for num_beams / num_return_sequences before the prefill).

The Cache API that generation uses: `reorder_cache` (beam search), `batch_repeat_interleave`,
`batch_select_indices` (a row is its LayerCache: selection moves it, a repeated row gets a copy of the packed
bytes, residual, counters and token metadata), `crop`, `reset`, `copy.deepcopy` and pickle (packed blocks, exact
residual rows, counters and token metadata; restored on the device it was saved from). `crop(n)`: see
VidKVLayer.crop for the exact / re-encoded rule.

Devices: key/value states arrive as [batch, kv_heads, tokens, head_dim] of the model's dtype on the model's device.
On a CUDA model the LayerCaches live there: they encode on the GPU with the CUDA kernels (on the model's current
stream), hold only packed bytes plus the full-precision residual window, and each decode step dequantizes one layer
into transient tensors for that layer's attention (`append_tensors` / `materialize_into`: no host copy). On a CPU
model the same runs on the host. A pickled cache is restored on the device it was saved from (on that device's
default stream).

Side data for token protectors (per prefill token, as in the trace schema): `modality` [T] or [batch, T] uint8
(0 system/prefix text, 1 visual, 2 query text, 3 generated) and `embeddings` [T, hidden] or [batch, T, hidden]
(the LLM input embeddings). Tokens appended after the prefill are marked generated (3).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from transformers.cache_utils import Cache, CacheLayerMixin

import _vidkv
from vidkv import fused_attention

__all__ = ["VidKVCache", "VidKVLayer", "codec_needs_question", "semantic_protectors", "resolve_codec",
           "kivi_codec", "hf_quantized_codec"]

MODALITY_VISUAL = 1
MODALITY_QUERY_TEXT = 2

_NOT_FUSED = ("VidKVCache(attention='fused'): the model's attention is not vidkv_fused, so decode steps would attend "
              "to placeholders: call vidkv.fused_attention.use_fused_attention(model) first (or attention='materialize')")


def resolve_codec(codec: dict) -> dict:
    """{"key": block, "value": block} with presets expanded, as the C++ resolves them (scalars as YAML text)."""
    import yaml

    return {side: yaml.safe_load(c.config) for side, c in _vidkv.codec(dict(codec)).items()}


def _protectors(codec: dict) -> list[dict]:
    """Every token protector block ({"type": ..., ...}) found anywhere in the resolved codec's nested blocks."""
    found: list[dict] = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "protector" and isinstance(v, dict) and "type" in v:
                    found.append(v)
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(resolve_codec(codec))
    return found


def _protector_types(codec: dict) -> list[str]:
    """Types of every token protector found anywhere in the resolved codec's nested blocks."""
    return [str(p["type"]) for p in _protectors(codec)]


def semantic_protectors(codec: dict) -> list[str]:
    """Names ('semantic_embedding', ...) of the token protectors in a codec dict (presets resolved) that score
    tokens against the query text (modality 2), found anywhere in the nested blocks."""
    return [t for t in _protector_types(codec) if t.startswith("semantic")]


def visual_candidate_protectors(codec: dict) -> list[str]:
    """Types of the token protectors of a codec dict (presets resolved) other than `none` whose candidates are the
    visual tokens (`candidates: visual`, the default): on tokens of which none is visual (modality 1) they protect
    nothing."""
    return [str(p["type"]) for p in _protectors(codec)
            if str(p.get("candidates", "visual")) == "visual" and str(p["type"]) != "none"]


def codec_needs_question(codec: dict) -> bool:
    """True when a token protector of the (resolved) codec needs query-text tokens (modality 2)."""
    return bool(semantic_protectors(codec))


def kivi_codec(k_bits: int = 2, v_bits: int = 2, group_size: int = 32, residual_length: int = 128) -> tuple[dict, dict]:
    """(codec, lifecycle) equal to KIVI's (arXiv 2402.02750; the released KIVI code's LlamaForCausalLM_KIVI config):

      KIVI name        meaning in KIVI                                              VidKV
      k_bits           key code bits, asymmetric min/max                            key: uniform bits
      v_bits           value code bits                                              value: uniform bits
      group_size       keys: per-channel groups of group_size tokens; values:       key: group, axis channel;
                       per-token groups of group_size channels                      value: group, axis token
      residual_length  keys: the prefill quantizes N - N mod R tokens, then whole   lifecycle kivi, residual R
                       R-token blocks; values: the last R tokens stay full
                       precision, each token leaving that window is quantized
    Scales and mins are stored as fp16 (KIVI keeps them in the model's fp16). kivi_codec(2, 2, 32, 128) is the
    kivi-2 preset."""
    codec = {"key": {"type": "uniform", "bits": int(k_bits), "group": int(group_size), "axis": "channel"},
             "value": {"type": "uniform", "bits": int(v_bits), "group": int(group_size), "axis": "token"}}
    return codec, {"type": "kivi", "group": int(group_size), "residual": int(residual_length)}


# transformers' quanto axis convention (QuantoQuantizedLayer: optimum-quanto groups contiguous elements of the
# [batch, heads, tokens, head_dim] tensor for axis 0, and of its transpose(0, -1) for axis -1).
_HF_AXES = {0: "token", -1: "channel"}


def hf_quantized_codec(nbits: int = 4, q_group_size: int = 64, residual_length: int = 128, axis_key: int = 0,
                       axis_value: int = 0) -> tuple[dict, dict]:
    """(codec, lifecycle) equal to transformers' QuantizedCache (QuantizedCacheConfig / cache_config names):

      transformers name   meaning in transformers (QuantizedLayer, quanto backend)       VidKV
      nbits               code bits of keys and values                                   uniform bits, both sides
      q_group_size        elements per group                                             uniform group
      axis_key/_value     0: groups of q_group_size consecutive channels of one token;   axis token
                          -1: groups of q_group_size consecutive tokens of one channel   axis channel
                          (batch 1; quanto's axis -1 groups the transposed tensor)
      residual_length     the prefill is quantized whole; decode tokens stay full        lifecycle release, group 1,
                          precision until residual_length of them, then the whole       residual R
                          cache (dequantized + residual) is quantized again from scratch
    transformers' defaults: nbits 4, q_group_size 64, residual_length 128, axes 0. Scales and zero points are
    stored as fp16 here (quanto keeps them in the model dtype). HQQ's axis numbering (0/1) is not this one."""
    for name, axis in (("axis_key", axis_key), ("axis_value", axis_value)):
        if axis not in _HF_AXES:
            raise _vidkv.ConfigError(f"VidKVCache.from_hf: {name}={axis} is not a transformers quanto axis (0: groups "
                                     "of channels per token, -1: groups of tokens per channel)")
    side = lambda axis: {"type": "uniform", "bits": int(nbits), "group": int(q_group_size), "axis": _HF_AXES[axis]}
    return ({"key": side(axis_key), "value": side(axis_value)},
            {"type": "release", "group": 1, "residual": int(residual_length)})


_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def layout_bits(keys: list, values: list, dtype: torch.dtype) -> dict:
    """Bits columns of the key and value Layouts of one cache or several (prompts), summed as `vidkv run` sums
    layers (_vidkv.account_bits, core/bits_accounting.h), with compression_ratio against the model's `dtype` and
    model_dtype_bits = its bits (16 for fp16/bf16, 32 for fp32)."""
    out = _vidkv.account_bits(keys, values, _DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch.")))
    out["model_dtype_bits"] = 8.0 * torch.empty((), dtype=dtype).element_size()
    return out


def _as_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32 if dtype == np.float32 else torch.int64).numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def _per_item(x, batch: int, tokens: int, name: str, dtype, rank_single: int):
    """Split side data [T(, hidden)] or [batch', T(, hidden)] into one array per batch row; a batch' dividing
    `batch` is repeated row-wise (generate's expansion for beams / returned sequences)."""
    if x is None:
        return [None] * batch
    arr = _as_numpy(x, dtype)
    if arr.ndim == rank_single:
        arr = np.broadcast_to(arr, (batch,) + arr.shape)
    if arr.ndim == rank_single + 1 and 0 < arr.shape[0] < batch and batch % arr.shape[0] == 0:
        arr = np.repeat(arr, batch // arr.shape[0], axis=0)
    if arr.ndim != rank_single + 1 or arr.shape[0] != batch or arr.shape[1] != tokens:
        want = "[T]" if rank_single == 1 else "[T, hidden]"
        raise _vidkv.ShapeError(
            f"VidKVCache: {name} has shape {list(arr.shape)}, but the prefill holds batch {batch} x {tokens} tokens "
            f"(expected {want} or [batch, ...] with T = {tokens})")
    return [np.ascontiguousarray(arr[b]) for b in range(batch)]


class VidKVLayer(CacheLayerMixin):
    """One decoder layer's cache: a `_vidkv.LayerCache` per batch row.

    caches[b]   row b's LayerCache (its real tokens only);
    real[b]     None when row b has no masked prefill position, else the int64 positions of its real prefill tokens;
    keys/values the prefill's exact K/V [batch, kv_heads, T, head_dim] until the next update encodes them (kvpress
                may replace them meanwhile); None after that."""

    is_compileable = False
    is_sliding = False
    is_croppable = True

    def __init__(self, owner: "VidKVCache", layer_idx: int):
        super().__init__()
        self.owner = owner
        self.layer_idx = layer_idx
        self.caches: list = []
        self.real: list = []
        self.prefill_tokens = 0   # T of the prefill (padded length), the positions `real` refers to
        self.cumulative_length = 0
        self.pending = False      # prefill K/V held in keys/values, not encoded yet
        self.attention = _vidkv.DecodeAttention()  # attention="fused": the decode steps' tables, kept between steps

    # ----- construction -------------------------------------------------------------------------------------
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        _, self.heads, _, self.head_dim = key_states.shape
        if value_states.shape[:2] != key_states.shape[:2] or value_states.shape[-1] != self.head_dim:
            raise _vidkv.ShapeError(
                f"VidKVCache layer {self.layer_idx}: key states {list(key_states.shape)} and value states "
                f"{list(value_states.shape)} differ in batch, heads or head_dim; the codec needs equal shapes")
        self.is_initialized = True

    def _new_cache(self):
        """A LayerCache on the model's device (its current stream on cuda), keeping the model's dtype for the
        residual (lifecycle residual_dtype data, the default)."""
        dtype = _DTYPE_NAMES.get(self.dtype, "fp32")
        device, stream = "cpu", 0
        if self.device.type == "cuda":  # packed blocks and residual on the model's GPU, on its current stream
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            device, stream = f"cuda:{index}", torch.cuda.current_stream(self.device).cuda_stream
        o = self.owner
        return _vidkv.LayerCache(o.codec, o.lifecycle, self.heads, self.head_dim, self.layer_idx, o.seed, dtype,
                                 device, stream)

    # ----- row I/O ------------------------------------------------------------------------------------------
    @staticmethod
    def _append_row(cache, k: torch.Tensor, v: torch.Tensor, modality=None, embeddings=None) -> None:
        """k, v: [heads, t, head_dim] of the model's dtype on the model's device (no host copy on cuda)."""
        cache.append_tensors(k.detach().contiguous(), v.detach().contiguous(), modality=modality, embeddings=embeddings)

    @staticmethod
    def _materialize_row(cache, kout: torch.Tensor, vout: torch.Tensor) -> None:
        """Writes `cache` as the model reads it into kout, vout [heads, cache.tokens, head_dim], contiguous."""
        cache.materialize_into(kout, vout)

    def _row_positions(self, b: int) -> torch.Tensor | None:
        """Positions (in the padded sequence) of row b's tokens, or None when they are [0, length)."""
        if self.real[b] is None:
            return None
        tail = torch.arange(self.prefill_tokens, self.cumulative_length, dtype=torch.long)
        return torch.cat([self.real[b], tail])

    # ----- the prefill, deferred ----------------------------------------------------------------------------
    def _flush(self) -> None:
        """Encodes the held prefill (what a press left in keys/values) into the rows' LayerCaches."""
        if not self.pending:
            return
        keys, values = self.keys, self.values
        batch, _, t, _ = keys.shape
        o = self.owner
        pruned = t != self.prefill_tokens
        if pruned:
            # A press (kvpress) removed tokens: the prefill's per-token side data no longer lines up.
            if any(r is not None for r in self.real):
                raise _vidkv.NotSupportedError(
                    f"VidKVCache layer {self.layer_idx}: the prefill was pruned from {self.prefill_tokens} to {t} "
                    "tokens (a kvpress press?) in a padded batch; pruning presses need an unpadded batch")
            if o.modality is not None or o.embeddings is not None:
                raise _vidkv.NotSupportedError(
                    f"VidKVCache layer {self.layer_idx}: the prefill was pruned from {self.prefill_tokens} to {t} "
                    "tokens (a kvpress press?), so per-token modality / embeddings no longer match the kept tokens; "
                    "a pruning press works with codecs whose protectors need no side data")
            self.prefill_tokens = t
        modality, embeddings = o._side_data(batch, t)
        self.caches = []
        for b in range(batch):
            cache = self._new_cache()
            k, v, m, e = keys[b], values[b], modality[b], embeddings[b]
            if self.real[b] is not None:  # only the row's real tokens
                idx = self.real[b].to(keys.device)
                k, v = k.index_select(1, idx), v.index_select(1, idx)
                sel = self.real[b].numpy()
                m = None if m is None else np.ascontiguousarray(m[sel])
                e = None if e is None else np.ascontiguousarray(e[sel])
            self._append_row(cache, k, v, m, e)
            self.caches.append(cache)
        self.cumulative_length = t
        self.keys = self.values = None
        self.pending = False

    # ----- the CacheLayerMixin API --------------------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Appends key/value states [batch, kv_heads, t, head_dim]; returns the K/V attention must use."""
        if not self.is_initialized:
            # The layers before this one have run their attention (and any press hook on it): encode their held
            # prefill now, so at most one layer's full-precision prefill exists at a time.
            for layer in self.owner.layers:
                if layer is not self and layer.pending:
                    layer._flush()
            self.lazy_initialization(key_states, value_states)
            batch, _, t, _ = key_states.shape
            self.prefill_tokens = self.cumulative_length = t
            self.real = self.owner._real_positions(batch, t)
            # Prefill attention uses the exact K/V (algorithms.md section 5); encoded at the next update.
            self.keys, self.values = key_states, value_states
            self.pending = True
            if self.owner.attention == "fused":
                self._check_fused_prefill()
                fused_attention.hand_off("dense", self)
            return key_states, value_states
        self._flush()
        batch, _, t, _ = key_states.shape
        if batch != len(self.caches):
            raise _vidkv.ShapeError(f"VidKVCache layer {self.layer_idx}: batch changed from {len(self.caches)} to "
                                    f"{batch} without reorder_cache / batch_select_indices / batch_repeat_interleave")
        fused = self.owner.attention == "fused"
        if fused and not self.owner._fused_attention_seen:
            raise _vidkv.ConfigError(_NOT_FUSED)
        fused_step = fused and t <= fused_attention.MAX_QUERY_TOKENS
        if fused_step:
            # A fused decode step (once per layer and step): every row's tokens in one call (append_rows takes
            # contiguous [batch, heads, t, head_dim]; with several tokens the model's K/V are often transposed views,
            # copied here: t tokens, not the cache).
            _vidkv.append_rows(self.caches, key_states.contiguous(), value_states.contiguous())
        else:
            for b, cache in enumerate(self.caches):
                self._append_row(cache, key_states[b], value_states[b])
        self.cumulative_length += t
        if fused:
            if fused_step:  # a few query tokens per row: attention reads the packed caches, nothing is materialized
                fused_attention.hand_off("fused", self)
                return (fused_attention.placeholder(batch, self.heads, self.cumulative_length, self.head_dim,
                                                    self.dtype, self.device),) * 2
            fused_attention.hand_off("dense", self)
        return self._materialize()

    def _check_fused_prefill(self) -> None:
        """attention="fused": layer 0 checks the codec, later layers that layer 0's attention went through
        vidkv_fused (before any decode step could attend to the placeholders)."""
        if self.layer_idx == 0:
            why = _vidkv.decode_attention_supports(self.owner.codec, self.head_dim)
            if why:
                raise _vidkv.NotSupportedError(f"VidKVCache(attention='fused'): decode attention cannot read this "
                                               f"codec in place ({why}); use attention='materialize'")
        elif not self.owner._fused_attention_seen:
            raise _vidkv.ConfigError(_NOT_FUSED)

    def _materialize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[batch, heads, length, head_dim] buffers of the model's dtype and device, alive while the layer attends."""
        shape = (len(self.caches), self.heads, self.cumulative_length, self.head_dim)
        padded = any(r is not None for r in self.real)
        alloc = torch.zeros if padded else torch.empty
        keys = alloc(shape, dtype=self.dtype, device=self.device)
        values = alloc(shape, dtype=self.dtype, device=self.device)
        for b, cache in enumerate(self.caches):
            pos = self._row_positions(b)
            if pos is None:
                self._materialize_row(cache, keys[b], values[b])
                continue
            n = cache.tokens
            k = torch.empty((self.heads, n, self.head_dim), dtype=self.dtype, device=self.device)
            v = torch.empty_like(k)
            self._materialize_row(cache, k, v)
            pos = pos.to(self.device)
            keys[b].index_copy_(1, pos, k)
            values[b].index_copy_(1, pos, v)
        return keys, values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_seq_length(self) -> int:
        if self.pending and self.keys is not None:
            return self.keys.shape[-2]  # a press may have pruned the held prefill
        return self.cumulative_length

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.caches, self.real = [], []
        self.keys = self.values = None
        self.cumulative_length = self.prefill_tokens = 0
        self.pending = False
        self.is_initialized = False

    def _select_rows(self, rows: list[int]) -> None:
        """Row i of the result is old row rows[i]: moved the first time, a copy (clone) for every repeat."""
        if self.pending:
            idx = torch.tensor(rows, dtype=torch.long, device=self.keys.device)
            self.keys, self.values = self.keys.index_select(0, idx), self.values.index_select(0, idx)
            self.real = [self.real[i] for i in rows]
            return
        used, caches = set(), []
        for i in rows:
            caches.append(self.caches[i] if i not in used else self.caches[i].clone())
            used.add(i)
        self.caches = caches
        self.real = [self.real[i] for i in rows]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized:
            self._select_rows([int(i) for i in beam_idx.tolist()])

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._select_rows([b for b in range(len(self.real)) for _ in range(int(repeats))])

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            idx = torch.as_tensor(indices).reshape(-1)
            if idx.dtype == torch.bool:
                idx = idx.nonzero().reshape(-1)
            self._select_rows([int(i) for i in idx.tolist()])

    def crop(self, tokens_to_remove: int) -> None:
        """transformers' convention: a negative value removes that many tokens from the end, 0 does nothing; a
        positive n keeps the first n tokens (the older absolute form). Per row, when the kept tokens include every
        quantized token of both sides (the cut lies in the full-precision residual) the crop is exact: the packed
        blocks stay as they are. Otherwise the row is rebuilt: its first n tokens, as the model reads them
        (dequantized blocks + residual), are appended to a new LayerCache as a prefill, which encodes them again
        under the lifecycle's prefill rule (a second quantization of already quantized values; exact codecs are
        unaffected). A crop into the padding of a padded row keeps no token of it. The held prefill (before the
        first decode step) is cut like DynamicCache's."""
        n = tokens_to_remove
        length = self.get_seq_length()
        if n == 0 or not self.is_initialized:
            return
        keep = length + n if n < 0 else min(n, length)
        if keep < 0:
            raise _vidkv.ValueError(f"VidKVCache.crop({n}): the cache holds only {length} tokens")
        if self.pending:
            self.keys, self.values = self.keys[..., :keep, :], self.values[..., :keep, :]
            if keep < self.prefill_tokens:
                self.prefill_tokens = keep
                self.real = [None if r is None else r[r < keep] for r in self.real]
            self.cumulative_length = keep
            return
        for b, cache in enumerate(self.caches):
            pos = self._row_positions(b)
            n_row = keep if pos is None else int((pos < keep).sum())
            if n_row >= max(cache.key_quantized, cache.value_quantized):
                cache.crop(n_row)
            else:
                self.caches[b] = self._rebuilt(cache, n_row)
        if keep < self.prefill_tokens:
            self.prefill_tokens = keep
            self.real = [None if r is None else r[r < keep] for r in self.real]
        self.cumulative_length = keep

    def _rebuilt(self, cache, n: int):
        """A new LayerCache whose prefill is the first n tokens of `cache` as the model reads them."""
        fresh = self._new_cache()
        if n == 0:
            return fresh
        k = torch.empty((self.heads, cache.tokens, self.head_dim), dtype=self.dtype, device=self.device)
        v = torch.empty_like(k)
        self._materialize_row(cache, k, v)
        modality = np.ascontiguousarray(cache.modality()[:n])
        emb = cache.embeddings()
        emb = None if emb is None else np.ascontiguousarray(emb[:n])
        self._append_row(fresh, k[:, :n], v[:, :n], modality, emb)
        return fresh

    def layouts(self):
        """[(key Layout, value Layout)] of every batch row: the bytes stored right now."""
        self._flush()
        return [(c.key_layout(), c.value_layout()) for c in self.caches]


def _random_protectors(codec: dict) -> list[str]:
    return [t for t in _protector_types(codec) if t == "random"]


class VidKVCache(Cache):
    """A transformers Cache routing every layer's K/V through a VidKV codec and cache lifecycle.

    codec:          the same dict as a YAML `codec:` block: {"preset": NAME} or {"key": {...}, "value": {...}}.
    lifecycle:      the `lifecycle:` block, e.g. {"type": "paper", "group": 32, "residual": 128}; default: the
                    preset's own when the codec names one ({"preset": "kivi-2"}: kivi, R = 128), else paper.
    modality:       per prefill token [T] or [batch, T], values 0..3 (numpy or torch); default: all 0.
    embeddings:     LLM input embeddings of the prefill tokens [T, hidden] or [batch, T, hidden] (semantic_embedding).
    attention_mask: the prefill's attention mask [batch, T] (1 real, 0 padding), for padded batches (module docstring).
    attention:      "materialize" (default): each decode step dequantizes the layer into transient tensors for the
                    model's own attention; "fused": decode steps of 1 to 8 new tokens per row (several: causal
                    among themselves) attend straight from the packed bits (attention/decode_attention.h) through
                    the "vidkv_fused" AttentionInterface function, which the model must use:
                    vidkv.fused_attention.use_fused_attention(model) (refused at layer 1's prefill otherwise); a
                    step of more new tokens is materialized as above (assisted decoding verifies candidates + 1
                    tokens per step: num_assistant_tokens <= 7 keeps its steps fused; transformers' default, 20
                    with a heuristic schedule, often does not); a codec decode attention cannot read is refused at
                    layer 0's prefill.
    seed:           seed of randomised plugins (each layer gets the same seed and its own layer index); None: 0, and
                    a codec with a random protector warns which seed it used.
    Errors at construction: unknown keys or bad values (vidkv.ConfigError); a semantic protector without the side
    data it reads (vidkv.ConfigError naming the argument to pass)."""

    def __init__(self, codec: dict, lifecycle: dict | None = None, modality=None, embeddings=None,
                 seed: int | None = None, attention_mask=None, attention: str = "materialize"):
        if attention not in ("materialize", "fused"):
            raise _vidkv.ConfigError(f"VidKVCache: attention={attention!r} is not 'materialize' (dequantize the layer, "
                                     "then the model's attention) or 'fused' (decode attention from the packed bits)")
        self.attention = attention
        self._fused_attention_seen = False  # set by the vidkv_fused attention function (vidkv.fused_attention)
        self.codec = dict(codec)
        if lifecycle is None:  # a preset's own lifecycle (kivi-2: kivi), as an experiment YAML run takes it
            lifecycle = _vidkv.codec_lifecycle(self.codec) if "preset" in self.codec else None
        self.lifecycle = dict(lifecycle) if lifecycle is not None else {"type": "paper"}
        self.modality = modality
        self.embeddings = embeddings
        self.attention_mask = attention_mask
        # Fail now, not at the first forward: build one throwaway layer cache (parses codec and lifecycle).
        _vidkv.LayerCache(self.codec, self.lifecycle, 1, 32, 0, 0)
        semantic = semantic_protectors(self.codec)
        if semantic:
            if modality is None:
                raise _vidkv.ConfigError(
                    f"VidKVCache: the codec's token protector {semantic[0]} scores tokens against the query text, "
                    "but no side data was given: pass modality= (per prefill token, 2 marking the question span)"
                    + (" and embeddings= (the LLM input embeddings of the prefill tokens)"
                       if "semantic_embedding" in semantic and embeddings is None else ""))
            given = _as_numpy(modality, np.uint8)
            if not (given == MODALITY_QUERY_TEXT).any():
                raise _vidkv.ConfigError(
                    f"VidKVCache: the codec's token protector {semantic[0]} scores tokens "
                    f"against the query text, but none of the {given.shape[-1]} prefill tokens that modality= gives "
                    "has modality 2 (query text): mark the question span (modality= covers every prefill token)")
            if "semantic_embedding" in semantic and embeddings is None:
                raise _vidkv.ConfigError(
                    "VidKVCache: the codec's token protector semantic_embedding compares token embeddings with the "
                    "question's, but no embeddings were given: pass embeddings= ([T, hidden] LLM input embeddings)")
        visual = visual_candidate_protectors(self.codec)
        if visual and (modality is None or not (_as_numpy(modality, np.uint8) == MODALITY_VISUAL).any()):
            warnings.warn(f"VidKVCache: the codec's token protector {visual[0]} takes its candidates from the visual "
                          "tokens (candidates: visual), but "
                          + ("no modality= was given (every token counts as context text)" if modality is None
                             else "no prefill token has modality 1 (visual)")
                          + ": it protects nothing; candidates: context takes them from the context span",
                          stacklevel=2)
        if seed is None:
            seed = 0
            if _random_protectors(self.codec):
                warnings.warn("VidKVCache: the codec has a random token protector and no seed was given: using "
                              "seed 0 (pass seed= to choose it)", stacklevel=2)
        self.seed = int(seed)
        super().__init__(layer_class_to_replicate=self._new_layer)

    @classmethod
    def from_kivi(cls, k_bits: int = 2, v_bits: int = 2, group_size: int = 32, residual_length: int = 128,
                  **kwargs) -> "VidKVCache":
        """The cache KIVI's own arguments describe (kivi_codec gives the meanings side by side with ours)."""
        codec, lifecycle = kivi_codec(k_bits, v_bits, group_size, residual_length)
        return cls(codec, lifecycle, **kwargs)

    @classmethod
    def from_hf(cls, nbits: int = 4, q_group_size: int = 64, residual_length: int = 128, axis_key: int = 0,
                axis_value: int = 0, **kwargs) -> "VidKVCache":
        """The cache transformers' QuantizedCache arguments describe (hf_quantized_codec gives the meanings)."""
        codec, lifecycle = hf_quantized_codec(nbits, q_group_size, residual_length, axis_key, axis_value)
        return cls(codec, lifecycle, **kwargs)

    def _new_layer(self) -> VidKVLayer:
        return VidKVLayer(self, len(self.layers))

    def _real_positions(self, batch: int, tokens: int) -> list:
        """Per prefill row: None (no padding) or the positions of its real tokens, from self.attention_mask."""
        if self.attention_mask is None:
            return [None] * batch
        mask = torch.as_tensor(self.attention_mask).detach().to("cpu")
        if mask.ndim == 1:
            mask = mask.unsqueeze(0)
        if mask.ndim == 2 and 0 < mask.shape[0] < batch and batch % mask.shape[0] == 0:
            mask = mask.repeat_interleave(batch // mask.shape[0], dim=0)
        if mask.ndim != 2 or mask.shape[0] != batch or mask.shape[1] != tokens:
            raise _vidkv.ShapeError(f"VidKVCache: attention_mask has shape {list(mask.shape)}, but the prefill holds "
                                    f"batch {batch} x {tokens} tokens")
        out = []
        for b in range(batch):
            keep = mask[b] != 0
            if bool(keep.all()):
                out.append(None)
            elif not bool(keep.any()):
                raise _vidkv.ValueError(f"VidKVCache: attention_mask row {b} masks every prefill token")
            else:
                out.append(keep.nonzero().reshape(-1).to(torch.long))
        return out

    def _flush(self) -> None:
        for layer in self.layers:
            layer._flush()

    def _side_data(self, batch: int, tokens: int) -> tuple[list, list]:
        """Per-row modality and embeddings of the prefill, split once (every layer reads the same)."""
        key = (batch, tokens, id(self.modality), id(self.embeddings))
        if getattr(self, "_side_key", None) != key:
            self._side_rows = (_per_item(self.modality, batch, tokens, "modality", np.uint8, 1),
                               _per_item(self.embeddings, batch, tokens, "embeddings", np.float32, 2))
            self._side_key = key
        return self._side_rows

    def layouts(self) -> tuple[list, list]:
        """(key Layouts, value Layouts) of every layer and batch row: the bytes stored right now."""
        keys, values = [], []
        for layer in self.layers:
            for kl, vl in layer.layouts():
                keys.append(kl)
                values.append(vl)
        return keys, values

    def bits(self) -> dict:
        """Bits per stored element right now, over every layer and batch row, from the exact packed layouts, as
        `vidkv run` counts them (_vidkv.account_bits, core/bits_accounting.h): key_/value_nominal_bits,
        key_/value_effective_bits (metadata and residual included), their element-weighted means nominal_bits /
        effective_bits, compression_ratio = model_dtype_bits / effective_bits, and model_dtype_bits (16 for
        fp16/bf16, 32 for fp32)."""
        keys, values = self.layouts()
        if not keys or any(sum(lay.elements for lay in side) == 0 for side in (keys, values)):
            raise _vidkv.Error("VidKVCache.bits(): the cache is empty (run the model first)")
        return layout_bits(keys, values, self.layers[0].dtype)

    def memory(self) -> dict:
        """Bytes the cache holds right now, per device ("cpu", "cuda:0", ...): {"packed_bytes", "residual_bytes",
        "total_bytes"} summed over layers and rows, as LayerCache.memory() counts them (allocations as requested:
        packed blocks, and the exact residual window with its slack). Encodes a prefill still held first."""
        self._flush()
        out: dict = {}
        for layer in self.layers:
            for cache in layer.caches:
                m = cache.memory()
                acc = out.setdefault(m["device"], {"packed_bytes": 0, "residual_bytes": 0, "total_bytes": 0})
                for k in acc:
                    acc[k] += m[k]
        return out
