"""vidkv.hf.VidKVCache through the Cache API transformers' generation uses (issue 12), on tiny random-weight Llamas
built locally on the CPU: beam search, crop, batch reshuffles, reset, deepcopy / pickle, padded batches, kvpress,
the KIVI / transformers constructors, side-data errors, bits() and memory()."""
import copy
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

from transformers import DynamicCache  # noqa: E402

from vidkv.hf import VidKVCache, hf_quantized_codec, kivi_codec, resolve_codec  # noqa: E402

# Identity codec storing fp32: lossless for a float32 model, so it must match DynamicCache exactly.
EXACT = {"key": {"type": "identity", "dtype": "fp32"}, "value": {"type": "identity", "dtype": "fp32"}}
PAPER = {"type": "paper", "group": 16, "residual": 32}
VOCAB = 128


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def ids(n, seed=1, batch=1):
    return torch.randint(3, VOCAB, (batch, n), generator=torch.Generator().manual_seed(seed))


def generate(model, input_ids, cache, n=8, **kw):
    args = dict(max_new_tokens=n, do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=0,
                eos_token_id=None, past_key_values=cache, output_logits=True, return_dict_in_generate=True)
    args.update(kw)
    if "attention_mask" not in args:
        args["attention_mask"] = torch.ones_like(input_ids)
    with torch.no_grad():
        return model.generate(input_ids, **args)


def feed(model, cache, tokens, start):
    """Feeds `tokens` ([1, n]) one at a time at positions start, start + 1, ...; returns [n, vocab] logits."""
    out = []
    with torch.no_grad():
        for i in range(tokens.shape[1]):
            pos = torch.tensor([[start + i]])
            out.append(model(tokens[:, i:i + 1], past_key_values=cache, position_ids=pos, use_cache=True).logits[0, -1])
    return torch.stack(out)


def prefill(model, cache, prompt):
    # cache_position: kvpress 0.5.5's hook reads it from the attention kwargs, which transformers 5.23 no longer
    # fills; passed here it travels down with the other keyword arguments.
    with torch.no_grad():
        return model(prompt, past_key_values=cache, use_cache=True,
                     cache_position=torch.arange(prompt.shape[1])).logits[0, -1]


# ----- beam search, crop, reshuffles, reset, copies ---------------------------------------------------------------

def test_beam_search_with_the_exact_codec_matches_dynamic_cache(model):
    prompt = ids(40)
    ref = generate(model, prompt, DynamicCache(), 10, num_beams=2, output_logits=False)
    cache = VidKVCache(EXACT, PAPER)
    out = generate(model, prompt, cache, 10, num_beams=2, output_logits=False)
    assert torch.equal(out.sequences, ref.sequences)
    # Beams were reordered through per-row LayerCaches: one per beam, each holding every token it attended.
    assert len(cache.layers[0].caches) == 2 and cache.layers[0].caches[0].tokens == 40 + 10 - 1
    # A lossy codec runs beam search too (no refusal) and keeps its packed blocks.
    lossy = VidKVCache({"preset": "kivi-2"}, {"type": "kivi", "group": 16, "residual": 16})
    generate(model, prompt, lossy, 10, num_beams=2, output_logits=False)
    assert lossy.bits()["effective_bits"] < 32


def test_crop_in_the_residual_is_exact_and_continues_like_a_fresh_run(model):
    prompt, cont = ids(40), ids(12, seed=2)
    lossy = {"preset": "vidkv-2"}
    fresh = VidKVCache(lossy, PAPER)
    prefill(model, fresh, prompt)
    ref = feed(model, fresh, cont, 40)
    cache = VidKVCache(lossy, PAPER)
    prefill(model, cache, prompt)
    feed(model, cache, cont, 40)
    # Prefill quantized 32 tokens (40 - 40 mod 16); 52 - 7 = 45 lies in the residual of both sides: exact.
    cache.crop(-7)
    assert cache.get_seq_length() == 45 and cache.layers[0].caches[0].key_quantized == 32
    again = feed(model, cache, cont[:, 5:], 45)
    assert torch.equal(again, ref[5:])


def test_crop_into_packed_blocks_reencodes_and_is_exact_for_the_exact_codec(model):
    """The same crop on DynamicCache is the reference (a fresh prefill of 30 tokens would compute their K/V with
    other matmul shapes, so it is not bitwise the 40-token prefill's)."""
    prompt, cont = ids(40), ids(12, seed=2)
    logits = []
    for cache in (DynamicCache(), VidKVCache(EXACT, PAPER)):
        prefill(model, cache, prompt)
        feed(model, cache, cont, 40)
        cache.crop(-22)  # VidKV: keep 30 < 32 quantized tokens: rebuilt from the materialized first 30 as a prefill
        assert cache.get_seq_length() == 30
        feed(model, cache, prompt[:, 30:], 30)
        logits.append(feed(model, cache, cont, 40))
    assert torch.equal(logits[0], logits[1])
    assert cache.layers[0].caches[0].key_quantized == 48  # the rebuilt prefill 30 - 30 mod 16, then a 32-block
    # A lossy codec takes the same path (second quantization of quantized values) and keeps going.
    lossy = VidKVCache({"preset": "vidkv-2"}, PAPER)
    prefill(model, lossy, prompt)
    feed(model, lossy, cont, 40)
    lossy.crop(-30)
    assert lossy.get_seq_length() == 22 and torch.isfinite(feed(model, lossy, cont[:, :2], 22)).all()


def test_prompt_lookup_decoding_crops_and_matches_dynamic_cache(model):
    prompt = torch.cat([ids(20), ids(20)], 1)  # repeated n-grams give the prompt lookup candidates to verify
    ref = generate(model, prompt, DynamicCache(), 12, output_logits=False)
    cache = VidKVCache(EXACT, PAPER)
    out = generate(model, prompt, cache, 12, prompt_lookup_num_tokens=3, output_logits=False)
    assert torch.equal(out.sequences, ref.sequences)


def test_deepcopy_and_pickle_continue_identically(model):
    prompt, cont = ids(40), ids(6, seed=3)
    cache = VidKVCache({"preset": "vidkv-k1.5-v1.58"}, {"type": "kivi", "group": 16, "residual": 16})
    prefill(model, cache, prompt)
    feed(model, cache, cont[:, :3], 40)
    twins = [copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))]
    ref = feed(model, cache, cont[:, 3:], 43)
    for twin in twins:
        assert torch.equal(feed(model, twin, cont[:, 3:], 43), ref)
    assert twins[1].bits() == cache.bits()
    # The prefill held before the first decode step travels too.
    held = VidKVCache({"preset": "kivi-2"}, PAPER)
    prefill(model, held, prompt)
    ref = feed(model, copy.deepcopy(held), cont, 40)
    assert torch.equal(feed(model, pickle.loads(pickle.dumps(held)), cont, 40), ref)


def test_a_pickled_layer_cache_of_another_version_is_refused_naming_both_versions():
    # A layer cache's pickle carries a version that changes with the packed bytes' meaning (version 3: layout
    # fragment's channel-axis metadata group-major); an older state would restore with the same byte counts and be
    # misread, so it is refused.
    import _vidkv
    lc = _vidkv.LayerCache({"preset": "kivi-2-fragment"}, PAPER, 2, 64, 0, 0, "fp32", "cpu", 0)
    g = torch.Generator().manual_seed(5)
    lc.append_tensors(torch.randn(2, 70, 64, generator=g), torch.randn(2, 70, 64, generator=g))
    assert pickle.loads(pickle.dumps(lc)).tokens == 70
    state = lc.__getstate__()
    assert state[0] == 3
    blank = type(lc).__new__(type(lc))  # what pickle.loads does before __setstate__
    with pytest.raises(ValueError, match="reads version 3, got 2"):
        blank.__setstate__((2,) + tuple(state[1:]))


def test_batch_repeat_interleave_select_and_reset(model):
    prompt = ids(24, batch=2)
    cache = VidKVCache({"preset": "kivi-2"}, {"type": "kivi", "group": 8, "residual": 8})
    with torch.no_grad():
        model(prompt, past_key_values=cache)
        model(ids(1, seed=4, batch=2), past_key_values=cache)
    before = [c.materialize() for c in cache.layers[1].caches]
    cache.batch_repeat_interleave(2)
    assert len(cache.layers[1].caches) == 4
    cache.batch_select_indices(torch.tensor([1, 2]))  # rows 0b and 1a of the repeated batch
    after = [c.materialize() for c in cache.layers[1].caches]
    for (k, v), (k0, v0) in zip(after, [before[0], before[1]]):
        assert np.array_equal(k, k0) and np.array_equal(v, v0)
    cache.reset()
    assert cache.get_seq_length() == 0 and not cache.layers[0].caches
    again = generate(model, ids(30), cache, 4, output_logits=False)
    fresh = generate(model, ids(30), VidKVCache({"preset": "kivi-2"}, {"type": "kivi", "group": 8, "residual": 8}), 4,
                     output_logits=False)
    assert torch.equal(again.sequences, fresh.sequences)


# ----- padded batches ---------------------------------------------------------------------------------------------

def test_padded_row_does_not_depend_on_its_pad_token_ids(model):
    real = ids(30, seed=5)
    row1 = ids(22, seed=6)
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, :8] = 0
    outs = []
    for pad in (0, 77):
        batch = torch.cat([real, torch.cat([torch.full((1, 8), pad), row1], 1)])
        cache = VidKVCache({"preset": "kivi-2"}, {"type": "kivi", "group": 8, "residual": 8}, attention_mask=mask)
        outs.append((generate(model, batch, cache, 10, attention_mask=mask), cache))
    (a, ca), (b, cb) = outs
    assert torch.equal(a.sequences[1, 30:], b.sequences[1, 30:])  # the generated tokens (the inputs differ)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a.logits, b.logits))  # delta = 0
    # Row 1's LayerCache holds only its 22 real prompt tokens (+ 9 generated), row 0 all 30.
    assert [c.tokens for c in ca.layers[0].caches] == [39, 31]
    # Without the mask the pads enter the quantizer's groups and the row changes with them (the bug this fixes).
    unmasked = []
    for pad in (0, 77):
        batch = torch.cat([real, torch.cat([torch.full((1, 8), pad), row1], 1)])
        unmasked.append(generate(model, batch, VidKVCache({"preset": "kivi-2"}, {"type": "kivi", "group": 8, "residual": 8}),
                                 10, attention_mask=mask))
    assert any(not torch.equal(x[1], y[1]) for x, y in zip(unmasked[0].logits, unmasked[1].logits))


def test_attention_mask_of_the_wrong_shape_is_a_shape_error(model):
    cache = VidKVCache(EXACT, PAPER, attention_mask=torch.ones(1, 7, dtype=torch.long))
    with pytest.raises(vidkv.ShapeError, match="attention_mask has shape"):
        prefill(model, cache, ids(10))


# ----- kvpress ----------------------------------------------------------------------------------------------------

def test_kvpress_pruning_is_what_gets_quantized(model):
    kvpress = pytest.importorskip("kvpress", reason="kvpress is not installed: run scripts/setup.sh --models")
    prompt, cont = ids(40), ids(5, seed=7)
    press = kvpress.KnormPress(compression_ratio=0.5)
    logits = []
    for cache in (DynamicCache(), VidKVCache(EXACT, PAPER)):
        with press(model):
            prefill(model, cache, prompt)
        assert cache.get_seq_length() == 20  # the press kept 20 of the 40 prefill tokens
        logits.append(feed(model, cache, cont, 40))
    assert torch.equal(logits[0], logits[1])
    assert [c.tokens for c in cache.layers[0].caches] == [20 + 5]  # what the press kept + 5 fed tokens
    lossy = VidKVCache({"preset": "kivi-2"}, {"type": "kivi", "group": 8, "residual": 8})
    with press(model):
        prefill(model, lossy, prompt)
    feed(model, lossy, cont[:, :1], 40)
    assert lossy.layers[0].caches[0].tokens == 21 and lossy.layers[0].caches[0].key_quantized == 16


# ----- the field's own words, side data, accounting -------------------------------------------------------------

def test_from_kivi_is_the_kivi_preset_and_from_hf_the_release_lifecycle(model):
    codec, lifecycle = kivi_codec(k_bits=2, v_bits=2, group_size=32, residual_length=128)
    assert resolve_codec(codec) == resolve_codec({"preset": "kivi-2"})
    assert lifecycle == {"type": "kivi", "group": 32, "residual": 128}
    codec, lifecycle = hf_quantized_codec(nbits=4, q_group_size=16, residual_length=8, axis_key=-1, axis_value=0)
    assert codec["key"]["axis"] == "channel" and codec["value"]["axis"] == "token" and codec["key"]["bits"] == 4
    assert lifecycle == {"type": "release", "group": 1, "residual": 8}
    cache = VidKVCache.from_hf(nbits=4, q_group_size=16, residual_length=8, axis_key=-1)
    generate(model, ids(40), cache, 10, output_logits=False)
    # transformers' rule: the whole prefill is quantized; at 8 residual tokens everything is re-quantized.
    assert cache.layers[0].caches[0].requantizations == 1 and cache.layers[0].caches[0].key_quantized == 48
    assert VidKVCache.from_kivi(k_bits=4, v_bits=2).lifecycle["type"] == "kivi"
    with pytest.raises(vidkv.ConfigError, match="axis_key=1"):
        VidKVCache.from_hf(axis_key=1)


@pytest.mark.parametrize("name,ours", [("k_bits", "bits"), ("q_group_size", "group"), ("group_size", "group"),
                                       ("nbits", "bits"), ("axis_key", "axis")])
def test_kivi_and_transformers_names_in_a_codec_block_suggest_ours(name, ours):
    block = {"type": "uniform", name: 2}
    with pytest.raises(vidkv.ConfigError, match=f"did you mean '{ours}'"):
        VidKVCache({"key": block, "value": {"type": "identity"}})


def test_residual_length_in_a_lifecycle_block_suggests_residual():
    with pytest.raises(vidkv.ConfigError, match="did you mean 'residual'"):
        VidKVCache(EXACT, {"type": "kivi", "residual_length": 128})


def test_semantic_protector_without_side_data_fails_at_construction_naming_the_argument():
    with pytest.raises(vidkv.ConfigError, match="pass modality="):
        VidKVCache({"preset": "vidkv-k1.5-v1.66-stp"})
    modality = np.zeros(50, np.uint8)
    modality[40:] = 2
    with pytest.raises(vidkv.ConfigError, match="pass embeddings="):
        VidKVCache({"preset": "vidkv-k1.5-v1.66-stp"}, modality=modality)


def test_random_protector_without_a_seed_says_which_seed_it_used():
    codec = resolve_codec({"preset": "vidkv-k1.5-v1.66-stp"})
    codec["value"]["protector"] = {"type": "random", "fraction": 0.2, "candidates": "all"}
    with pytest.warns(UserWarning, match="using seed 0"):
        VidKVCache(codec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert VidKVCache(codec, seed=5).seed == 5


def test_bits_uses_the_model_dtype_and_memory_counts_bytes_held(model):
    cache = VidKVCache(EXACT, PAPER)
    generate(model, ids(40), cache, 4, output_logits=False)
    bits = cache.bits()
    # fp32 identity blocks and an fp32 residual: 32 bits per element, ratio 32 / 32 = 1 (not 16 / 32).
    assert bits["effective_bits"] == 32.0 and bits["model_dtype_bits"] == 32.0 and bits["compression_ratio"] == 1.0
    mem = cache.memory()
    # 43 tokens (40 prefill + 3 fed back); tokens [0, 32) packed: 2 layers x (K + V) x 2 KV heads x 32 x 16 channels
    # x 4 bytes = 16,384. The exact residual window (11 tokens) lives in the prefill's store of 40 rows: not cut, as
    # it is within twice the window (2 x (R + 1) = 66 rows); the first decode step found it full and moved the 8
    # live rows to its front over the 32 encoded ones (fp32 on the host): 2 x 2 x 2 x 40 x 16 x 4 = 20,480 bytes
    # held. Nothing else: no full-precision copy beyond the store.
    assert mem == {"cpu": {"packed_bytes": 16384, "residual_bytes": 20480, "total_bytes": 36864}}


def test_at_most_one_layers_prefill_is_held_in_full_precision(model):
    cache = VidKVCache({"preset": "kivi-2"}, PAPER)
    prefill(model, cache, ids(40))
    # Layer 0 was encoded when layer 1's prefill arrived; layer 1 (the last) still holds its exact K/V.
    assert [layer.pending for layer in cache.layers] == [False, True]
    assert cache.layers[0].keys is None and cache.layers[1].keys.shape == (1, 2, 40, 16)
    cache.memory()  # counting the bytes encodes the held prefill first
    assert not cache.layers[1].pending and cache.layers[1].keys is None


def test_a_visual_candidate_protector_without_visual_tokens_warns_that_it_protects_nothing():
    modality = np.zeros(50, np.uint8)
    modality[40:] = 2  # context text and a question, no visual token
    emb = np.zeros((50, 8), np.float32)
    with pytest.warns(UserWarning, match="no prefill token has modality 1 \\(visual\\): it protects nothing"):
        VidKVCache({"preset": "vidkv-k1.5-v1.66-stp"}, modality=modality, embeddings=emb)
    codec = resolve_codec({"preset": "vidkv-k1.5-v1.66-stp"})
    codec["value"]["protector"]["candidates"] = "context"
    modality[5:20] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VidKVCache(codec, modality=modality, embeddings=emb)  # candidates: context
        VidKVCache({"preset": "vidkv-k1.5-v1.66-stp"}, modality=modality, embeddings=emb)  # visual tokens present
