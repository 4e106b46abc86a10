"""VidKVCache(attention="fused") through the vidkv_fused AttentionInterface function (vidkv.fused_attention), on a
tiny random-weight Llama on the CPU (decode attention's CPU path is its reference: plugin decode, then attention in
double) and, in the [cuda] part, on the GPU kernels."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

from transformers import DynamicCache  # noqa: E402

from vidkv.fused_attention import use_fused_attention  # noqa: E402
from vidkv.hf import VidKVCache  # noqa: E402

EXACT = {"key": {"type": "identity", "dtype": "fp32"}, "value": {"type": "identity", "dtype": "fp32"}}
PAPER = {"type": "paper", "group": 16, "residual": 32}
VOCAB = 128


def tiny_llama(device="cpu", dtype=torch.float32, heads=8, kv_heads=2):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=32, max_position_embeddings=512,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).to(device, dtype).eval()
    model.set_attn_implementation("sdpa")
    return model


def run(model, cache, n_prompt=70, steps=12, batch=1, device="cpu"):
    """Prefill, then `steps` decode steps teacher-forced with fixed random tokens (so two caches see the same
    inputs at every step); returns (greedy tokens [batch, steps], logits [steps, batch, vocab])."""
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, VOCAB, (batch, n_prompt), generator=g).to(device)
    forced = torch.randint(3, VOCAB, (batch, steps), generator=g).to(device)
    toks, logits = [], []
    with torch.no_grad():
        model(ids, past_key_values=cache, use_cache=True)
        for i in range(steps):
            out = model(forced[:, i:i + 1], past_key_values=cache, use_cache=True)
            logits.append(out.logits[:, -1].float().cpu())
            toks.append(out.logits[:, -1:].argmax(-1).cpu())
    return torch.cat(toks, 1), torch.stack(logits)


def test_fused_attention_with_the_exact_codec_decodes_like_dynamic_cache():
    # fp32 identity keeps K/V exactly; the fused path then differs from sdpa by summation order only (the CPU
    # reference attends in double): same greedy tokens, logits within 1e-4 (random weights, |logit| ~ 1).
    model = tiny_llama()
    want_toks, want = run(model, DynamicCache())
    use_fused_attention(model)
    got_toks, got = run(model, VidKVCache(EXACT, PAPER, attention="fused"), batch=1)
    assert torch.equal(got_toks, want_toks)
    assert (got - want).abs().max().item() < 1e-4


def test_fused_attention_with_more_than_8_query_heads_per_kv_head_decodes_like_dynamic_cache():
    # GQA 16 (16 query heads over 1 KV head, then 32 over 2): decode attention takes any multiple of the KV heads
    # (on the GPU in groups of at most 8 query heads, DecodeAttention::query_head_groups); with the exact codec the
    # fused steps match sdpa as in the test above.
    for heads, kv_heads in ((16, 1), (32, 2)):
        model = tiny_llama(heads=heads, kv_heads=kv_heads)
        want_toks, want = run(model, DynamicCache(), steps=6)
        use_fused_attention(model)
        got_toks, got = run(model, VidKVCache(EXACT, PAPER, attention="fused"), steps=6)
        assert torch.equal(got_toks, want_toks)
        assert (got - want).abs().max().item() < 1e-4


@pytest.mark.parametrize("preset", ["kivi-2", "vidkv-k1.5-v1.58"])
def test_fused_attention_equals_dequantize_then_attend(preset):
    # The same packed bits attended two ways: materialized (dequantize the layer, then sdpa in fp32) and fused
    # (decode attention from the bits). Both see the same cache, so the logits agree to float rounding of the
    # attention (1e-3 on logits of magnitude ~1 after two layers; docs/decode-attention.md derives the kernel bound).
    model = tiny_llama()
    toks_m, logits_m = run(model, VidKVCache({"preset": preset}, PAPER, attention="materialize"), batch=2)
    use_fused_attention(model)
    toks_f, logits_f = run(model, VidKVCache({"preset": preset}, PAPER, attention="fused"), batch=2)
    assert (logits_f - logits_m).abs().max().item() < 1e-3
    assert torch.equal(toks_f, toks_m)


CHUNKS = (1, 3, 8, 2, 10, 5, 1)  # new tokens per decode step: 1 to 8 fused (MAX_QUERY_TOKENS), 10 materialised


class RecordingAttention:
    """Stands in for a layer's _vidkv.DecodeAttention and records the query tokens of each fused run."""

    def __init__(self, inner):
        self.inner, self.query_tokens = inner, []

    def run(self, caches, query, out, query_tokens=1):
        self.query_tokens.append(query_tokens)
        return self.inner.run(caches, query, out, query_tokens)


def run_chunks(model, cache, chunks=CHUNKS, n_prompt=70, batch=2, device="cpu"):
    """Prefill, then one decode step per entry of `chunks` with that many teacher-forced tokens per row (assisted
    decoding's candidates, chunked teacher forcing); returns the logits of every new position [batch, sum(chunks),
    vocab]. A fused cache's layers get a RecordingAttention after the prefill."""
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(3, VOCAB, (batch, n_prompt), generator=g).to(device)
    forced = torch.randint(3, VOCAB, (batch, sum(chunks)), generator=g).to(device)
    logits, at = [], 0
    with torch.no_grad():
        model(ids, past_key_values=cache, use_cache=True)
        if getattr(cache, "attention", None) == "fused":
            for layer in cache.layers:
                layer.attention = RecordingAttention(layer.attention)
        for n in chunks:
            logits.append(model(forced[:, at:at + n], past_key_values=cache, use_cache=True).logits.float().cpu())
            at += n
    return torch.cat(logits, 1)


def test_fused_steps_of_several_tokens_attend_causally_like_dynamic_cache():
    # The exact codec: steps of 1 to 8 new tokens per row attend from the packed cache (the CPU reference, causal
    # among the step's tokens), a step of 10 through the materialised K/V; every position's logits as DynamicCache's
    # within summation order (1e-4). A mask off by one token moves them by far more.
    model = tiny_llama()
    want = run_chunks(model, DynamicCache())
    use_fused_attention(model)
    cache = VidKVCache(EXACT, PAPER, attention="fused")
    got = run_chunks(model, cache)
    assert (got - want).abs().max().item() < 1e-4
    fused = [n for n in CHUNKS if n <= 8]  # the steps that read the packed cache, with their query tokens
    assert all(layer.attention.query_tokens == fused for layer in cache.layers)


@pytest.mark.parametrize("preset", ["kivi-2", "vidkv-k1.5-v1.58"])
def test_fused_steps_of_several_tokens_equal_dequantize_then_attend(preset):
    # The same packed bits attended two ways, steps of several tokens included (the materialised path applies the
    # causal mask that transformers builds; the fused one the causal limits of decode_attention.h).
    model = tiny_llama()
    want = run_chunks(model, VidKVCache({"preset": preset}, PAPER, attention="materialize"))
    use_fused_attention(model)
    cache = VidKVCache({"preset": preset}, PAPER, attention="fused")
    got = run_chunks(model, cache)
    assert (got - want).abs().max().item() < 1e-3
    assert all(layer.attention.query_tokens == [n for n in CHUNKS if n <= 8] for layer in cache.layers)


def test_a_copied_fused_cache_decodes_like_the_original():
    # Each layer keeps its decode-attention tables between steps (_vidkv.DecodeAttention); a deepcopy or pickle of
    # the cache starts with empty ones and rebuilds them at its first step: the copy and the original then decode
    # the same next steps to the same logits.
    import copy
    import pickle
    model = tiny_llama()
    use_fused_attention(model)
    cache = VidKVCache({"preset": "kivi-2"}, PAPER, attention="fused")
    run(model, cache, steps=6)
    assert all(layer.attention.tiles > 0 for layer in cache.layers)
    copies = [copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))]
    assert all(layer.attention.tiles == 0 for c in copies for layer in c.layers)
    nxt = torch.randint(3, VOCAB, (1, 1), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        outs = [model(nxt, past_key_values=c, use_cache=True).logits for c in [cache] + copies]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_decode_attention_api_with_several_query_tokens_attends_causally():
    # The low-level calls a user makes without a model: _vidkv.decode_attention (one shot) and a kept
    # _vidkv.DecodeAttention, query [batch, n, q_heads, head_dim] (token-major) with query_tokens=n: the caches' last
    # n tokens, token j of a cache of T tokens attending to its first T - n + 1 + j. Against a float64 reference over
    # each cache's materialize() (KIVI with a window of 32: packed keys and values in every cache), written here.
    import math
    import numpy as np
    import _vidkv
    torch.manual_seed(0)
    heads, dim, q_heads = 2, 32, 8
    caches = []
    for tokens in (70, 45, 100):
        c = _vidkv.LayerCache({"preset": "kivi-2"}, {"type": "kivi", "group": 32, "residual": 32}, heads, dim, 0, 0,
                              "fp32", "cpu", 0)
        c.append_tensors(torch.randn(heads, tokens, dim), torch.randn(heads, tokens, dim))
        caches.append(c)
    assert all(c.key_quantized > 0 and c.value_quantized > 0 for c in caches)

    def reference(q, n):
        out = torch.empty_like(q, dtype=torch.float64)
        for b, c in enumerate(caches):
            k, v = (torch.from_numpy(np.asarray(x)).double() for x in c.materialize())
            t = k.shape[1]
            for j in range(n):
                seen = t - n + 1 + j
                for qh in range(q_heads):
                    h = qh // (q_heads // heads)
                    p = torch.softmax(k[h, :seen] @ q[b, j, qh].double() / math.sqrt(dim), 0)
                    out[b, j, qh] = p @ v[h, :seen]
        return out

    kept = _vidkv.DecodeAttention()
    for n in (1, 4, 8, 3):
        q = torch.randn(len(caches), n, q_heads, dim)
        one_shot, run = torch.empty_like(q), torch.empty_like(q)
        _vidkv.decode_attention(caches, q, one_shot, query_tokens=n)
        kept.run(caches, q, run, query_tokens=n)
        assert torch.equal(one_shot, run)
        assert (one_shot.double() - reference(q, n)).abs().max().item() < 1e-5
    with pytest.raises(vidkv.ShapeError, match="query_tokens"):  # a token axis without the count: the hint names it
        _vidkv.decode_attention(caches, torch.randn(3, 4, q_heads, dim), torch.empty(3, 4, q_heads, dim))
    short = _vidkv.LayerCache({"preset": "kivi-2"}, {"type": "kivi", "group": 32, "residual": 32}, heads, dim, 0, 0,
                              "fp32", "cpu", 0)
    short.append_tensors(torch.randn(heads, 5, dim), torch.randn(heads, 5, dim))
    with pytest.raises(vidkv.ShapeError, match="fewer than its 8 query tokens"):
        _vidkv.decode_attention([short], torch.randn(1, 8, q_heads, dim), torch.empty(1, 8, q_heads, dim), query_tokens=8)


def test_append_rows_appends_each_row_as_append_tensors_does():
    # The fused decode step appends every row's token in one call; the caches must end up as with one
    # append_tensors per row. A batch that does not match the caches is refused.
    import numpy as np
    import _vidkv
    mk = lambda: _vidkv.LayerCache(EXACT, PAPER, 2, 8, 0, 0, "fp32", "cpu", 0)  # noqa: E731
    g = torch.Generator().manual_seed(3)
    k, v = torch.randn(3, 2, 5, 8, generator=g), torch.randn(3, 2, 5, 8, generator=g)
    rows, each = [mk() for _ in range(3)], [mk() for _ in range(3)]
    _vidkv.append_rows(rows, k, v)
    for i in range(3):
        each[i].append_tensors(k[i], v[i])
    for x, y in zip(rows, each):
        assert x.tokens == y.tokens == 5
        for p, q in zip(x.materialize(), y.materialize()):
            assert np.array_equal(p, q)
    with pytest.raises(_vidkv.ShapeError):
        _vidkv.append_rows(rows[:2], k, v)


def test_append_rows_that_fails_leaves_each_rows_metadata_at_its_tokens():
    # append_rows records every row's token metadata before appending (the encodes read it); a row that is refused
    # (a NaN: ValueError on a cpu cache) must not leave any row with metadata for a token its cache does not hold.
    import _vidkv
    mk = lambda: _vidkv.LayerCache(EXACT, PAPER, 2, 8, 0, 0, "fp32", "cpu", 0)  # noqa: E731
    g = torch.Generator().manual_seed(4)
    rows = [mk() for _ in range(3)]
    _vidkv.append_rows(rows, torch.randn(3, 2, 4, 8, generator=g), torch.randn(3, 2, 4, 8, generator=g))
    k, v = torch.randn(3, 2, 1, 8, generator=g), torch.randn(3, 2, 1, 8, generator=g)
    k[0, 0, 0, 0] = float("nan")
    with pytest.raises(_vidkv.ValueError):
        _vidkv.append_rows(rows, k, v)
    for r in rows:
        assert len(r.modality()) == r.tokens
    _vidkv.append_rows(rows, torch.randn(3, 2, 1, 8, generator=g), torch.randn(3, 2, 1, 8, generator=g))
    for r in rows:
        assert len(r.modality()) == r.tokens


def test_fused_cache_refuses_a_model_whose_attention_is_not_vidkv_fused():
    model = tiny_llama()
    with pytest.raises(vidkv.ConfigError, match="use_fused_attention"):
        run(model, VidKVCache(EXACT, PAPER, attention="fused"))


def test_fused_cache_refuses_a_codec_decode_attention_cannot_read_before_any_attention():
    # sign with an FFT is read in place for keys only (the query is transformed, not the probabilities).
    model = tiny_llama()
    use_fused_attention(model)
    codec = {"key": {"type": "uniform", "bits": 2}, "value": {"type": "sign", "fft": "real"}}
    with pytest.raises(vidkv.NotSupportedError, match="attention='materialize'"):
        run(model, VidKVCache(codec, PAPER, attention="fused"))


def stp_inputs(n_prompt=70):
    """The token context the semantic-embedding protector scores: prompt tokens 10 .. n - 11 visual (modality 1, the
    protector's candidates, so that some are protected and the protected split is read), the last 10 the question
    (modality 2). (Until 2026-12-04 no token was visual, so nothing was protected.)"""
    g = torch.Generator().manual_seed(11)
    modality = torch.zeros(n_prompt, dtype=torch.uint8)
    modality[10:n_prompt - 10] = 1
    modality[n_prompt - 10:] = 2
    return dict(modality=modality, embeddings=torch.randn(n_prompt, 128, generator=g))


@pytest.mark.parametrize("preset", ["vidkv-k1.5-v1.66-stp", "vidkv-k1.75-v1.66-stp-release", "vidkv-k1.5-v1.58-release"])
def test_fused_attention_reads_stp_and_fft_complex_presets(preset):
    # mixed_token values (semantic token protection) and sign fft: complex keys read in place: the same logits as
    # dequantize-then-attend within float rounding of the attention, as for the presets above.
    model = tiny_llama()
    toks_m, logits_m = run(model, VidKVCache({"preset": preset}, PAPER, attention="materialize", **stp_inputs()))
    use_fused_attention(model)
    toks_f, logits_f = run(model, VidKVCache({"preset": preset}, PAPER, attention="fused", **stp_inputs()))
    assert (logits_f - logits_m).abs().max().item() < 1e-3
    assert torch.equal(toks_f, toks_m)


def test_unknown_attention_mode_is_a_config_error():
    with pytest.raises(vidkv.ConfigError, match="'materialize'"):
        VidKVCache(EXACT, PAPER, attention="flash")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
@pytest.mark.parametrize("preset", ["fp16", "kivi-2", "vidkv-k1.5-v1.58", "vidkv-k1.5-v1.66-stp", "vidkv-k1.5-v1.58-release"])
def test_cuda_fused_attention_matches_the_materialized_cache(preset):
    # fp16 model on the GPU: the kernels (fp32 online softmax) against dequantize-then-sdpa (fp16 attention): the
    # logits agree within fp16 attention's rounding (5e-2 on logits ~1 after two layers). The STP preset: one
    # sequence (its token context is one sequence's modalities and embeddings).
    model = tiny_llama("cuda", torch.float16)
    stp = "stp" in preset
    kw, batch = (stp_inputs(), 1) if stp else ({}, 2)
    toks_m, logits_m = run(model, VidKVCache({"preset": preset}, PAPER, **kw), batch=batch, device="cuda")
    use_fused_attention(model)
    toks_f, logits_f = run(model, VidKVCache({"preset": preset}, PAPER, attention="fused", **kw), batch=batch, device="cuda")
    assert (logits_f - logits_m).abs().max().item() < 5e-2
    assert (toks_f == toks_m).float().mean().item() >= 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
@pytest.mark.parametrize("preset", ["kivi-2", "vidkv-k1.5-v1.58"])
def test_cuda_fused_attention_with_16_query_heads_per_kv_head_matches_the_materialized_cache(preset):
    # 32 query heads over 2 KV heads (GQA 16): the kernels run once per group of 8 query heads (two row-copy launches
    # per group, layer and step); against dequantize-then-sdpa as in the test above.
    model = tiny_llama("cuda", torch.float16, heads=32, kv_heads=2)
    toks_m, logits_m = run(model, VidKVCache({"preset": preset}, PAPER), batch=2, device="cuda")
    use_fused_attention(model)
    toks_f, logits_f = run(model, VidKVCache({"preset": preset}, PAPER, attention="fused"), batch=2, device="cuda")
    assert (logits_f - logits_m).abs().max().item() < 5e-2
    assert (toks_f == toks_m).float().mean().item() >= 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
@pytest.mark.parametrize("preset", ["kivi-2", "vidkv-k1.5-v1.58"])
def test_cuda_fused_steps_of_several_tokens_match_the_materialized_cache(preset):
    # Steps of 1 to 8 tokens per row through the kernels (each token a row of the tables with its causal limit), one
    # of 10 materialised: every position's logits within fp16 attention's rounding of dequantize-then-sdpa.
    model = tiny_llama("cuda", torch.float16)
    want = run_chunks(model, VidKVCache({"preset": preset}, PAPER), device="cuda")
    use_fused_attention(model)
    cache = VidKVCache({"preset": preset}, PAPER, attention="fused")
    got = run_chunks(model, cache, device="cuda")
    assert (got - want).abs().max().item() < 5e-2
    assert all(layer.attention.query_tokens == [n for n in CHUNKS if n <= 8] for layer in cache.layers)
