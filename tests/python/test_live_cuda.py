"""The cache hook with a CUDA model (skipped without a GPU): the cache encodes and stores on the GPU (packed blocks and
the residual window on the model's device, nothing on the host) and gives the CPU cache's bytes. A tiny random Llama
built locally; no tokenizer or weights needed."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

from vidkv.hf import VidKVCache  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


def tiny_llama(dtype):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024)
    return LlamaForCausalLM(cfg).to("cuda", dtype).eval()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_model_through_the_hook(dtype):
    dt = getattr(torch, dtype)
    model = tiny_llama(dt)
    ids = torch.randint(0, 512, (1, 100), generator=torch.Generator().manual_seed(1)).cuda()
    kw = dict(max_new_tokens=24, do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=0)
    with torch.no_grad():
        plain = model.generate(ids, **kw)
        cache = VidKVCache({"preset": "fp16"}, {"type": "paper", "group": 16, "residual": 32})
        hooked = model.generate(ids, past_key_values=cache, **kw)
        # No persistent full-precision copy: the layer holds only its LayerCaches between steps.
        assert cache.layers[0].keys is None and cache.layers[0].dtype == dt
        held = cache.memory()
        assert list(held) == ["cuda:0"] and held["cuda:0"]["packed_bytes"] > 0  # nothing held on the host
        low = VidKVCache({"preset": "vidkv-2"}, {"type": "paper", "group": 16, "residual": 32})
        quant = model.generate(ids, past_key_values=low, **kw)
    if dtype == "float32":
        assert torch.equal(hooked, plain)  # fp16 rounding of fp32 K/V does not flip a greedy token here
    else:
        assert hooked.shape == plain.shape
    assert quant.shape[1] == plain.shape[1] and low.bits()["effective_bits"] < 16


def _generate(model, ids, cache, **kw):
    args = dict(max_new_tokens=12, do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=0,
                eos_token_id=None, past_key_values=cache)
    args.update(kw)
    with torch.no_grad():
        return model.generate(ids, **args)


EXACT = {"key": {"type": "identity", "dtype": "fp32"}, "value": {"type": "identity", "dtype": "fp32"}}


def test_cuda_exact_codec_beam_search_and_crop_match_dynamic_cache():
    from transformers import DynamicCache
    model = tiny_llama(torch.float32)
    ids = torch.randint(0, 512, (1, 80), generator=torch.Generator().manual_seed(2)).cuda()
    ref = _generate(model, ids, DynamicCache(), num_beams=2)
    assert torch.equal(_generate(model, ids, VidKVCache(EXACT, {"type": "paper", "group": 16, "residual": 32}),
                                 num_beams=2), ref)
    rep = torch.cat([ids[:, :40], ids[:, :40]], 1)
    ref = _generate(model, rep, DynamicCache())
    assert torch.equal(_generate(model, rep, VidKVCache(EXACT, {"type": "paper", "group": 16, "residual": 32}),
                                 prompt_lookup_num_tokens=3), ref)


def test_cuda_padded_row_independent_of_pad_ids_and_pickle_round_trip():
    import copy
    import pickle
    model = tiny_llama(torch.bfloat16)
    g = torch.Generator().manual_seed(3)
    real, row1 = torch.randint(3, 512, (1, 64), generator=g), torch.randint(3, 512, (1, 50), generator=g)
    mask = torch.ones(2, 64, dtype=torch.long)
    mask[1, :14] = 0
    outs = []
    for pad in (0, 77):
        batch = torch.cat([real, torch.cat([torch.full((1, 14), pad), row1], 1)]).cuda()
        cache = VidKVCache({"preset": "kivi-2"}, {"type": "kivi", "group": 16, "residual": 16},
                           attention_mask=mask.cuda())
        outs.append(_generate(model, batch, cache, attention_mask=mask.cuda(), output_logits=True,
                              return_dict_in_generate=True))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(outs[0].logits, outs[1].logits))
    twin = pickle.loads(pickle.dumps(cache))
    deep = copy.deepcopy(cache)
    step = torch.randint(3, 512, (2, 1), generator=g).cuda()
    with torch.no_grad():
        ref = model(step, past_key_values=cache).logits
        assert torch.equal(model(step, past_key_values=twin).logits, ref)
        assert torch.equal(model(step, past_key_values=deep).logits, ref)
    mem = cache.memory()
    assert sum(d["total_bytes"] for d in mem.values()) > 0


@pytest.mark.parametrize("preset", ["kivi-2", "vidkv-2", "vidkv-k1.5-v1.58"])
def test_gpu_layer_cache_equals_the_cpu_layer_cache(preset):
    """Same fp16 K/V appended (prefill 200, then 40 decode steps) into a LayerCache on cuda:0 and one on the CPU: the
    materialized caches are bit-identical (exact CUDA tiers; the FFT keys of vidkv-k1.5 within a stated bound) and
    the GPU cache holds only its residual window in full precision."""
    import _vidkv
    g = torch.Generator().manual_seed(3)
    k = torch.randn(4, 240, 128, generator=g).half()
    v = torch.randn(4, 240, 128, generator=g).half()
    lc = {"type": "paper", "group": 32, "residual": 64}
    gpu = _vidkv.LayerCache({"preset": preset}, lc, 4, 128, 0, 0, "fp16", "cuda:0", torch.cuda.current_stream().cuda_stream)
    cpu = _vidkv.LayerCache({"preset": preset}, lc, 4, 128, 0, 0, "fp16")
    kc, vc = k.cuda(), v.cuda()
    gpu.append_tensors(kc[:, :200].contiguous(), vc[:, :200].contiguous())
    cpu.append_tensors(k[:, :200].contiguous(), v[:, :200].contiguous())
    for t in range(200, 240):
        gpu.append_tensors(kc[:, t:t + 1].contiguous(), vc[:, t:t + 1].contiguous())
        cpu.append_tensors(k[:, t:t + 1].contiguous(), v[:, t:t + 1].contiguous())
    gk, gv = torch.empty(4, 240, 128, dtype=torch.float32, device="cuda"), torch.empty(4, 240, 128, device="cuda")
    gpu.materialize_into(gk, gv)
    ck, cv = torch.empty(4, 240, 128), torch.empty(4, 240, 128)
    cpu.materialize_into(ck, cv)
    assert gpu.key_layout().bytes == cpu.key_layout().bytes and gpu.value_layout().bytes == cpu.value_layout().bytes
    if preset == "vidkv-k1.5-v1.58":
        # FFT keys: the fused tiles / cuFFT vs the CPU transform round differently (sign_fft_tolerance.h); a sign
        # of a near-zero component may flip, so the bound is on the whole layer: relative Frobenius error < 1e-3.
        assert float((gk.cpu() - ck).norm() / ck.norm()) < 1e-3
    else:
        assert torch.equal(gk.cpu(), ck)
    assert torch.equal(gv.cpu(), cv)
    m = gpu.memory()
    # the residual window's store, fp16, both sides: at most 2 (R + 1) rows per side (LayerCache's growth: the
    # window plus room to move it to the front in place; here 130 rows after the first decode step)
    assert m["device"] == "cuda:0" and m["residual_bytes"] <= 2 * 2 * 65 * 4 * 128 * 2
