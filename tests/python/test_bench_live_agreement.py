"""vidkv bench --live's teacher-forced agreement columns (vidkv.bench_live._Reference / _Agreement), on hand-made
logits: which positions agree, the relative logit error and the smallest reference margin among disagreements."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")

from vidkv.bench_live import _Agreement, _Reference  # noqa: E402


def test_agreement_counts_positions_error_and_margin():
    ref = _Reference()
    ref.add(torch.tensor([3.0, 1.0, 0.0]))   # token 0, top-2 margin 2
    ref.add(torch.tensor([0.0, 2.0, 1.9]))   # token 1, margin 0.1 (a near-tie)
    ref.add(torch.tensor([-1.0, 0.5, 1.5]))  # token 2, margin 1
    assert ref.tokens == [[0], [1], [2]]  # per position, one token per sequence (batch 1 here)
    assert [m[0] for m in ref.margin] == pytest.approx([2.0, 0.1, 1.0])
    assert ref.predictions == 3
    cache = _Agreement(ref)
    cache.add(0, torch.tensor([2.9, 1.0, 0.0]))    # agrees; error 0.1
    cache.add(1, torch.tensor([0.0, 1.8, 1.95]))   # flips the near-tie: error 0.2 (entry 1), margin 0.1 recorded
    cache.add(2, torch.tensor([-1.0, 0.5, 1.25]))  # agrees; error 0.25 (entry 2)
    assert cache.agree == 2
    assert cache.margin == pytest.approx(0.1)
    # the largest |difference| (0.25) over the largest |reference logit| (3)
    assert cache.error == pytest.approx(0.25 / 3.0)


def test_identical_logits_agree_everywhere_with_zero_error():
    ref = _Reference()
    rows = [torch.tensor([0.5, -2.0, 0.25]), torch.tensor([1.0, 4.0, -4.0])]
    for r in rows:
        ref.add(r)
    cache = _Agreement(ref)
    for j, r in enumerate(rows):
        cache.add(j, r.clone())
    assert (cache.agree, cache.error, cache.margin) == (2, 0.0, None)


def test_agreement_counts_every_sequence_of_a_batch():
    # Two positions of a batch of 2 sequences: [batch, vocab] logits per position.
    ref = _Reference()
    ref.add(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))  # tokens 0 and 2; margins 1 and 5
    ref.add(torch.tensor([[0.0, 3.0, 2.5], [4.0, 0.0, 1.0]]))  # tokens 1 and 0; margins 0.5 and 3
    assert ref.tokens == [[0, 2], [1, 0]]
    assert ref.margin == [pytest.approx([1.0, 5.0]), pytest.approx([0.5, 3.0])]
    assert ref.predictions == 4 and ref.largest == 5.0
    cache = _Agreement(ref)
    cache.add(0, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))  # both agree, error 0
    cache.add(1, torch.tensor([[0.0, 2.0, 2.5], [4.0, 0.0, 1.0]]))  # sequence 0 flips (margin 0.5); error 1 (entry [0][1])
    assert cache.agree == 3
    assert cache.margin == pytest.approx(0.5)
    assert cache.error == pytest.approx(1.0 / 5.0)


@pytest.mark.parametrize("cache_kind", ["dynamic", "vidkv-exact"])
def test_prefill_in_passes_gives_the_one_pass_logits(cache_kind):
    # vidkv bench --live --prefill-chunk: the prompt fed in passes of 16 tokens per sequence ends with the same
    # last-position logits as one pass (fp32 model on the CPU; the passes only change the order of the sums in
    # attention, so agreement to 1e-5 relative, not bit for bit). VidKVCache with an exact (identity fp32) codec takes
    # its later passes through the materialised multi-token path.
    pytest.importorskip("transformers")
    vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")  # noqa: F841
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    from vidkv.bench_live import _prefill
    from vidkv.hf import VidKVCache

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    model.set_attn_implementation("sdpa")
    prompt = torch.randint(0, 96, (2, 53), generator=torch.Generator().manual_seed(3))
    exact = {"key": {"type": "identity", "dtype": "fp32"}, "value": {"type": "identity", "dtype": "fp32"}}

    def make():
        return DynamicCache() if cache_kind == "dynamic" else VidKVCache(exact)

    with torch.inference_mode():
        whole = _prefill(model, prompt, make(), 0).logits[:, -1]
        passes_cache = make()
        passes = _prefill(model, prompt, passes_cache, 16).logits[:, -1]
    assert passes_cache.get_seq_length() == 53
    assert whole.shape == (2, 96)
    torch.testing.assert_close(passes, whole, rtol=1e-5, atol=1e-5 * float(whole.abs().max()))
