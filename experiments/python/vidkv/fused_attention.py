"""Decode attention straight from the packed cache, through transformers' public AttentionInterface (issue 13).

    from vidkv.hf import VidKVCache
    from vidkv.fused_attention import use_fused_attention
    use_fused_attention(model)                    # registers "vidkv_fused" and selects it for this model
    cache = VidKVCache({"preset": "vidkv-k1.5-v1.58"}, attention="fused")
    model.generate(**inputs, past_key_values=cache, max_new_tokens=32)

How it works. `use_fused_attention` registers an attention function under the name "vidkv_fused" (and the
sdpa mask format for it, AttentionMaskInterface) and calls `model.set_attn_implementation("vidkv_fused")`; nothing
in transformers is patched. A VidKVCache built with attention="fused" tells the attention call that follows each
of its `update`s what to do, through a thread-local hand-off:
  * prefill (and any step with more than MAX_QUERY_TOKENS new tokens per row): the cache returns full-precision K/V
    as usual (exact at the prefill; dequantized otherwise) and the attention is torch's
    scaled_dot_product_attention (transformers' sdpa_attention_forward, with the mask);
  * a decode step with 1 to MAX_QUERY_TOKENS new tokens per row (one token; assisted decoding's candidates, a chunk
    of teacher-forced tokens): the cache appends the tokens and returns zero-stride placeholders (no memory) of the
    right shape; the attention function runs the layer's `_vidkv.DecodeAttention` on its LayerCaches (one per row,
    each holding only that row's real tokens, so padding needs no mask) with the query, reading the packed blocks
    in place (attention/decode_attention.h: CUDA kernels on a GPU model, the scalar reference on the CPU). Several
    new tokens attend causally among themselves (token j of n to the row's cached tokens before the step and new
    tokens 0..j: the causal mask a decoder gives them); the mask that transformers builds is not read, so a custom
    mask over the new tokens (tree attention) is not honoured on this path. Each new token reads the packed cache
    once (n tokens: n times a one-token step's bytes). No full-precision K or V of the cache is ever materialised.
    The layer keeps that object between steps: its tables are updated (the new blocks' and the residual windows'
    tiles), not rebuilt, and their device memory and the kernels' workspace stay allocated.
A cache built with attention="fused" refuses to run its first decode step when its prefill attention did not go
through "vidkv_fused" (the placeholders would otherwise be attended): the error says to call use_fused_attention.
Attention scaling: the kernel computes softmax(q.k / sqrt(head_dim)); a model whose `scaling` differs gets its
query pre-multiplied by scaling * sqrt(head_dim).
"""
from __future__ import annotations

import math
import threading

import torch

import _vidkv

ATTENTION_NAME = "vidkv_fused"
# New tokens per row that a step may attend to from the packed cache (attention/decode_attention.h kMaxQueryTokens);
# a step with more goes through the materialised K/V and sdpa.
MAX_QUERY_TOKENS = 8

_handoff = threading.local()


class _Request:
    """What the next attention call of this thread must do: kind "dense" (sdpa on the K/V it gets) or "fused"
    (decode attention from `layer`'s LayerCaches)."""

    __slots__ = ("kind", "layer")

    def __init__(self, kind: str, layer):
        self.kind = kind
        self.layer = layer


def hand_off(kind: str, layer) -> None:
    """Called by VidKVLayer.update (attention="fused") just before it returns."""
    _handoff.request = _Request(kind, layer)


def _take():
    req = getattr(_handoff, "request", None)
    _handoff.request = None
    return req


def fused_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                            is_causal=None, **kwargs):
    """The "vidkv_fused" attention function: query [batch, q_heads, q_len, head_dim]; returns ([batch, q_len,
    q_heads, head_dim], None) like transformers' sdpa_attention_forward. On a fused step the q_len query tokens are
    the rows' last q_len cached tokens and attend causally; attention_mask is not read there (module docstring)."""
    req = _take()
    if req is not None:
        req.layer.owner._fused_attention_seen = True
    if req is None or req.kind != "fused":
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, q_heads, q_len, dim = query.shape
    if not 1 <= q_len <= MAX_QUERY_TOKENS:  # hand_off asks for the fused path only within that
        raise _vidkv.ShapeError(f"vidkv_fused attention: {q_len} query tokens per row on the fused path "
                                f"(expected 1 to {MAX_QUERY_TOKENS})")
    if scaling is not None and abs(scaling * math.sqrt(dim) - 1.0) > 1e-6:
        query = query * (scaling * math.sqrt(dim))
    if q_len == 1:
        # [batch, q_heads, 1, dim] in, [batch, 1, q_heads, dim] out: with one token both are [batch, q_heads, dim] in
        # memory, so the kernels read and write them in place.
        if not query.is_contiguous():
            query = query.contiguous()
    else:
        # The kernels' layout [batch, q_len, q_heads, dim] (token-major), which is also the output's.
        query = query.transpose(1, 2).contiguous()
    out = query.new_empty((batch, q_len, q_heads, dim))
    attention = getattr(req.layer, "attention", None)  # None: a layer unpickled from before it kept one
    if attention is None:
        attention = req.layer.attention = _vidkv.DecodeAttention()
    attention.run(req.layer.caches, query, out, q_len)  # the layer's tables, updated since its last step
    return out, None


def register() -> None:
    """Registers "vidkv_fused" with transformers' AttentionInterface and AttentionMaskInterface (sdpa masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, fused_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def use_fused_attention(model) -> None:
    """Registers "vidkv_fused" and selects it for `model` (model.set_attn_implementation)."""
    register()
    model.set_attn_implementation(ATTENTION_NAME)


_zeros: dict = {}  # (dtype, device) -> a 0-d zero tensor, made once (torch.zeros on cuda launches a fill each time)


def placeholder(batch: int, heads: int, tokens: int, dim: int, dtype, device) -> torch.Tensor:
    """A [batch, heads, tokens, dim] tensor of zeros with stride 0 everywhere: the shape attention expects, no
    memory. Only the "vidkv_fused" attention function receives it, and it never reads it."""
    zero = _zeros.get((dtype, device))
    if zero is None:
        zero = _zeros[(dtype, device)] = torch.zeros((), dtype=dtype, device=device)
    return zero.expand(batch, heads, tokens, dim)
