"""The cache hook with a CUDA model (skipped without a GPU): K/V go to the CPU codec and come back to the GPU in the
model's dtype. A tiny random Llama built locally; no tokenizer or weights needed."""
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
        assert cache.layers[0].keys.device.type == "cuda" and cache.layers[0].keys.dtype == dt
        low = VidKVCache({"preset": "vidkv-2"}, {"type": "paper", "group": 16, "residual": 32})
        quant = model.generate(ids, past_key_values=low, **kw)
    if dtype == "float32":
        assert torch.equal(hooked, plain)  # fp16 rounding of fp32 K/V does not flip a greedy token here
    else:
        assert hooked.shape == plain.shape
    assert quant.shape[1] == plain.shape[1] and low.bits()["effective_bits"] < 16
