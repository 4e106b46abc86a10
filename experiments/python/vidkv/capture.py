"""One forward pass over a whole sequence, capturing what a schema-v1 trace records for every decoder layer.

    captured = capture_pass(loaded, model_inputs)
    captured.keys[i], captured.values[i]   # float32 [kv_heads, T, head_dim]: post-RoPE K/V as the KV cache holds them
    captured.queries[i]                    # float32 [query_heads, T, head_dim]: post-RoPE query states
    captured.embeddings                    # float32 [T, hidden]: the decoder's input embeddings (visual features
                                           # already in place for video models)
    captured.logits                        # float32 [T, vocab]

K/V come from the pass's own DynamicCache. Query states are taken where the model hands them to its attention
function: an attention implementation registered through transformers' public AttentionInterface (with eager's
mask function in AttentionMaskInterface) records the
query of the text decoder's attention modules, then runs the model's own eager attention (the function of the
model's modeling module), so numerics are those of `attn_implementation="eager"`. Input embeddings are the
`inputs_embeds` the text decoder receives (a forward pre-hook), or its embed_tokens output for text models.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = ["Captured", "capture_pass", "decoder_of", "CAPTURE_ATTENTION"]

CAPTURE_ATTENTION = "vidkv_capture"
_state = {"queries": None, "modules": None, "attentions": None}


def _capture_attention(module, query, key, value, attention_mask, **kwargs):
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise RuntimeError(f"{type(module).__module__} defines no eager_attention_forward; cannot capture queries")
    out, weights = eager(module, query, key, value, attention_mask, **kwargs)
    modules = _state["modules"]
    if modules is not None and id(module) in modules:
        _state["queries"][modules[id(module)]] = query.detach()
        if _state["attentions"] is not None:
            _state["attentions"][modules[id(module)]] = weights.detach()
    return out, weights


def _register():
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(CAPTURE_ATTENTION, _capture_attention)
    # The mask must be eager's (an additive float mask): an unknown implementation would get sdpa's, which may be
    # None (left to sdpa's is_causal), and eager attention would then attend to future tokens.
    AttentionMaskInterface.register(CAPTURE_ATTENTION, eager_mask)


def decoder_of(model):
    """The text decoder (the module holding `.layers` and `.embed_tokens`)."""
    dec = model.get_decoder()
    if not hasattr(dec, "layers"):
        raise RuntimeError(f"{type(model).__name__}: no text decoder with .layers found")
    return dec


@dataclass
class Captured:
    keys: list
    values: list
    queries: list
    embeddings: object
    logits: object
    attentions: list | None = None  # per layer [query_heads, T, T] probabilities, when asked for


def capture_pass(loaded, model_inputs: dict, attentions: bool = False) -> Captured:
    """Runs model(**model_inputs) once (batch 1) and returns what it captured (see the module docstring);
    with attentions=True also the eager attention probabilities of every decoder layer (for verification)."""
    import torch
    from transformers import DynamicCache

    model = loaded.model
    _register()
    dec = decoder_of(model)
    modules = {id(layer.self_attn): i for i, layer in enumerate(dec.layers)}
    queries: dict[int, torch.Tensor] = {}
    embeds: dict[str, torch.Tensor] = {}

    def pre_hook(_mod, args, kwargs):
        e = kwargs.get("inputs_embeds")
        if e is None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            e = dec.embed_tokens(ids)
        embeds["x"] = e.detach()

    previous = model.config._attn_implementation
    handle = dec.register_forward_pre_hook(pre_hook, with_kwargs=True)
    probs: dict[int, torch.Tensor] | None = {} if attentions else None
    _state.update(queries=queries, modules=modules, attentions=probs)
    try:
        model.set_attn_implementation(CAPTURE_ATTENTION)
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            out = model(**model_inputs, past_key_values=cache, use_cache=True)
    finally:
        handle.remove()
        _state.update(queries=None, modules=None, attentions=None)
        model.set_attn_implementation(previous)
    n = len(dec.layers)
    missing = [i for i in range(n) if i not in queries]
    if missing:
        raise RuntimeError(f"query states of layers {missing} were not captured")
    cache = out.past_key_values
    keys = [cache.layers[i].keys[0].float().cpu() for i in range(n)]
    values = [cache.layers[i].values[0].float().cpu() for i in range(n)]
    return Captured(keys=keys, values=values, queries=[queries[i][0].float().cpu() for i in range(n)],
                    embeddings=embeds["x"][0].float().cpu(), logits=out.logits[0].float().cpu(),
                    attentions=[probs[i][0].float().cpu() for i in range(n)] if attentions else None)
