"""vidkv.hf.VidKVCache inside model.generate, and vidkv.live end to end, on real SmolLM2 weights."""
import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

from transformers import DynamicCache  # noqa: E402

from vidkv import live  # noqa: E402
from vidkv.hf import VidKVCache  # noqa: E402
from vidkv.token_layout import build_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PASSAGE = ("Here is a passage. It is a truth universally acknowledged, that a single man in possession of a good "
           "fortune, must be in want of a wife. However little known the feelings or views of such a man may be on "
           "his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding "
           "families, that he is considered the rightful property of some one or other of their daughters. ")
QUESTION = "Question: What is a single man of good fortune in want of? Answer briefly."


def greedy(model, inputs, n, cache=None):
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False, temperature=None, top_p=None, top_k=None,
                             past_key_values=cache, pad_token_id=2)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def test_fp16_hook_matches_plain_generate_token_for_token(smollm2):
    inputs = build_inputs(smollm2, PASSAGE + QUESTION, QUESTION).model_inputs
    plain = greedy(smollm2.model, inputs, 20)
    # A lifecycle dict given here replaces the preset's: residual_dtype fp16 keeps every stored element fp16 (the
    # default, data, would keep this float32 model's residual tokens in fp32 and count 32 bits for them).
    cache = VidKVCache({"preset": "fp16"}, {"type": "paper", "group": 16, "residual": 32, "residual_dtype": "fp16"})
    hooked = greedy(smollm2.model, inputs, 20, cache)
    assert hooked == plain
    # Every layer went through the codec: prompt + generated tokens minus the last one (never fed back).
    T = inputs["input_ids"].shape[1] + len(plain) - 1
    assert len(cache.layers) == 30 and all(layer.get_seq_length() == T for layer in cache.layers)
    assert all(layer.caches[0].tokens == T for layer in cache.layers)
    assert cache.bits()["effective_bits"] == 16.0


def test_prefill_returns_exact_states_and_decode_reads_the_quantized_cache():
    cache = VidKVCache({"key": {"type": "uniform", "bits": 2, "group": 16, "axis": "channel"},
                        "value": {"type": "uniform", "bits": 2, "group": 16, "axis": "token"}},
                       {"type": "paper", "group": 16, "residual": 32})
    g = torch.Generator().manual_seed(0)
    k = torch.randn(1, 2, 40, 32, generator=g)
    v = torch.randn(1, 2, 40, 32, generator=g)
    rk, rv = cache.update(k, v, 0)
    assert rk is k and rv is v  # the prefill attends to the exact inputs
    k1, v1 = torch.randn(1, 2, 1, 32, generator=g), torch.randn(1, 2, 1, 32, generator=g)
    dk, dv = cache.update(k1, v1, 0)
    assert dk.shape == (1, 2, 41, 32) and cache.get_seq_length() == 41
    # The first 32 tokens (N - N mod G) are quantized; the 8 + 1 residual tokens are exact copies (residual_dtype
    # data: the states' own dtype, fp32 here).
    assert 0.05 < ((dk[:, :, :32] - k[:, :, :32]).norm() / k[:, :, :32].norm()).item() < 0.6
    assert torch.equal(dk[:, :, 32:40], k[:, :, 32:])
    assert torch.equal(dk[:, :, 40:], k1)
    bits = cache.bits()
    assert 2 < bits["key_effective_bits"] < 16 and bits["key_nominal_bits"] < bits["key_effective_bits"]


def test_bad_codec_and_missing_question_fail_at_construction():
    with pytest.raises(vidkv.ConfigError, match="bits"):
        VidKVCache({"key": {"type": "uniform", "bits": 9}, "value": {"type": "identity"}})
    with pytest.raises(vidkv.ConfigError, match="modality 2"):
        VidKVCache({"preset": "vidkv-k1.5-v1.66-stp"}, modality=np.zeros(50, np.uint8))


def write_experiment(path, sweep, prompts):
    path.write_text(f"""
name: live-test
model:
  id: HuggingFaceTB/SmolLM2-135M-Instruct
  gguf: smollm2
  max_new_tokens: 12
  prompts: {json.dumps(prompts)}
seed: 1
codec: {{preset: fp16}}
lifecycle: {{type: paper, group: 16, residual: 32}}
sweep: {json.dumps(sweep)}
metrics: [all]
""")


def test_live_degradation_is_finite_and_ordered_by_bits(smollm2, tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    prompts = [{"text": PASSAGE + QUESTION, "question": QUESTION,
                "reference": "A single man of good fortune must be in want of a wife, as the passage says."}]
    sweep = [{"name": "fp16", "codec": {"preset": "fp16"}}, {"name": "vidkv-2", "codec": {"preset": "vidkv-2"}},
             {"name": "vidkv-k1.5-v1.58", "codec": {"preset": "vidkv-k1.5-v1.58"}}]
    write_experiment(exp, sweep, prompts)
    out = live.run_live(str(exp), [], str(tmp_path / "res"), loaded=smollm2)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "provenance.json", "results.csv",
                                                     "results.jsonl", "summary.md"]
    rows = {r["run"]: r for r in csv.DictReader(open(out / "results.csv"))}
    header = next(csv.reader(open(out / "results.csv")))
    assert header[:5] == ["experiment", "run", "trace", "layer", "kv_head"] and "generated_text" in header
    for r in rows.values():
        assert r["layer"] == "-1" and r["kv_head"] == "-1" and "SmolLM2" in r["trace"]
        for m in ("perplexity", "perplexity_reference", "next_token_kl", "greedy_agreement", "effective_bits"):
            assert np.isfinite(float(r[m])), (r["run"], m)
    kl = {k: float(r["next_token_kl"]) for k, r in rows.items()}
    assert kl["fp16"] < 1e-4 and float(rows["fp16"]["greedy_agreement"]) == 1.0
    assert 0 < kl["vidkv-2"] < kl["vidkv-k1.5-v1.58"]
    assert float(rows["fp16"]["effective_bits"]) == 16
    assert float(rows["vidkv-k1.5-v1.58"]["effective_bits"]) < float(rows["vidkv-2"]["effective_bits"]) < 16
    assert float(rows["vidkv-2"]["perplexity"]) > float(rows["vidkv-2"]["perplexity_reference"]) * 0.99
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["mode"] == "live" and len(prov["runs"]) == 3
    # The table and its key on stdout, as vidkv run prints them (the generated texts only in the files).
    printed = capsys.readouterr().out
    assert "| run | lifecycle | perplexity |" in printed and "| vidkv-k1.5-v1.58 | paper" in printed
    assert "key (per run, over every prompt:" in printed
    assert "\n  perplexity, perplexity_reference: lower is better" in printed
    assert "\n  greedy_agreement: higher is better" in printed and "generated_text" not in printed
    print("live figures:", {k: (r["next_token_kl"], r["greedy_agreement"], r["perplexity"]) for k, r in rows.items()})


def test_semantic_protector_without_question_fails_before_anything_is_written(tmp_path):
    exp = tmp_path / "exp.yaml"
    write_experiment(exp, [{"name": "stp", "codec": {"preset": "vidkv-k1.5-v1.66-stp"}}],
                     [{"text": "Tell me about Paris.", "reference": "Paris is the capital of France."}])
    with pytest.raises(live.LiveError, match=r"prompts\[0\] has no question span"):
        live.run_live(str(exp), [], str(tmp_path / "res"))
    assert not (tmp_path / "res").exists() and not (tmp_path / "res.partial").exists()


def test_unknown_model_key_names_the_valid_keys(tmp_path):
    exp = tmp_path / "exp.yaml"
    write_experiment(exp, [{"name": "fp16", "codec": {"preset": "fp16"}}], [{"text": "a", "reference": "b"}])
    with pytest.raises(live.LiveError, match="unknown key 'frame'; valid keys: id, gguf"):
        live.run_live(str(exp), ["model.frame=3"], str(tmp_path / "res"))


@pytest.mark.skipif(not (ROOT / "build" / "bin" / "vidkv").exists(), reason="build/bin/vidkv is not built")
def test_vidkv_live_command_validates_like_vidkv_run(tmp_path):
    exp = tmp_path / "exp.yaml"
    write_experiment(exp, [{"name": "fp16", "codec": {"preset": "fp16"}}], [{"text": "a", "reference": "b"}])
    r = subprocess.run([str(ROOT / "build" / "bin" / "vidkv"), "live", str(exp), "--set", "codec.key.bits=3"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "vidkv live: error:" in r.stderr and "bits" in r.stderr


def _tiny_bf16_llama_with_large_values():
    """A 2-layer random Llama in bf16 whose layer-0 value states reach ~1e5 (v_proj scaled), beyond fp16's 65504."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    with torch.no_grad():
        model.model.layers[0].self_attn.v_proj.weight.mul_(1e6)
    return model


def test_bf16_model_with_values_beyond_fp16_runs_like_dynamic_cache():
    """Issue 14: the residual keeps the model's dtype (bf16), so a bf16 model whose layer-0 V reaches 1.2e5 runs
    with the VidKV cache as with transformers' DynamicCache; an explicit fp16 residual is a vidkv.ValueError that
    names layer 0 and residual_dtype (it used to give inf, then a ShapeError about layer 1)."""
    model = _tiny_bf16_llama_with_large_values()
    inputs = {"input_ids": torch.arange(3, 43).unsqueeze(0), "attention_mask": torch.ones(1, 40, dtype=torch.long)}
    reference = DynamicCache()
    plain = greedy(model, inputs, 6, reference)
    assert reference.layers[0].values.abs().max().item() > 65504  # the premise: V beyond fp16's range
    lossless = {"key": {"type": "identity", "dtype": "bf16"}, "value": {"type": "identity", "dtype": "bf16"}}
    cache = VidKVCache(lossless, {"type": "paper", "group": 16, "residual": 32})
    assert greedy(model, inputs, 6, cache) == plain
    # A lossy preset stays finite: every materialized value is a number.
    lossy = VidKVCache({"preset": "vidkv-2"}, {"type": "paper", "group": 16, "residual": 32})
    greedy(model, inputs, 6, lossy)
    assert all(np.isfinite(c.materialize()[1]).all() for layer in lossy.layers for c in layer.caches)
    narrow = VidKVCache(lossless, {"type": "paper", "group": 16, "residual": 32, "residual_dtype": "fp16"})
    with pytest.raises(vidkv.ValueError, match=r"layer 0, KV head \d+, token \d+, channel \d+.*residual_dtype"):
        greedy(model, inputs, 6, narrow)
    assert issubclass(vidkv.ValueError, ValueError) and issubclass(vidkv.ValueError, vidkv.Error)

