"""vidkv validate-metrics on real SmolLM2 weights: a short trace recorded here, every preset replayed on it and run
live on its prompt. Replay and live run the same schedule (prefill = the prompt, decode = the generated tokens), so
they count the same stored bytes; and the headline trace metric ranks the settings like live next-token KL."""
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
h5py = pytest.importorskip("h5py")
vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

import _vidkv  # noqa: E402

from vidkv import record as rec  # noqa: E402
from vidkv import validate_metrics as vm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# A shortened version of the bundled trace's prompt (traces/README-recorded.md): the opening of Pride and Prejudice.
PASSAGE = ("Here is a passage. \"My dear Mr. Bennet,\" said his lady to him one day, \"have you heard that Netherfield "
           "Park is let at last?\" Mr. Bennet replied that he had not. \"But it is,\" returned she; \"for Mrs. Long has "
           "just been here, and she told me all about it.\" ")
QUESTION = "Question: Who told Mrs. Bennet that Netherfield Park is let? Answer briefly."
HEADLINE = "decode_attn_out_depth_error"


def test_spearman_golden_values():
    # ranks of [3, 1, 2] are [3, 1, 2]; of [10, 30, 20]: [1, 3, 2]; centred (1, -1, 0) . (-1, 1, 0) / 2 = -1.
    assert vm.spearman([3, 1, 2], [10, 30, 20]) == pytest.approx(-1.0)
    assert vm.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    # ties share their mean rank: [1, 1, 2] -> [1.5, 1.5, 3]; with [1, 2, 3]: centred (-.5, -.5, 1), (-1, 0, 1):
    # 1.5 / sqrt(1.5 * 2) = 0.866...
    assert vm.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / np.sqrt(3.0))
    assert np.isnan(vm.spearman([1, 1, 1], [1, 2, 3]))


def _experiment(path: Path, trace: Path, presets: list[str]) -> Path:
    # A short prompt (~100 tokens) would sit in the presets' 128-token residual: G = 8, R = 16 quantize most of it,
    # and each preset keeps its own lifecycle type (paper, release, kivi).
    lines = [f"name: validate-short", f"traces: [{trace}]", "seed: 42", "codec: {preset: fp16}",
             "lifecycle: {group: 8, residual: 16}", "sweep:"]
    for p in presets:
        extra = ", value: {protector: {candidates: context}}" if "stp" in p else ""
        lines.append(f"  - {{name: {p}, codec: {{preset: {p}{extra}}}}}")
    lines.append("  - {name: vidkv-k1.5-v1.58-scaled, codec: {preset: vidkv-k1.5-v1.58, value: {reconstruction: scaled}}}")
    # G = 8, R = 16 still leave 14 of the 126 tokens in full precision under the paper lifecycle (118 mod 8 = 6
    # prompt tokens + 8 answer tokens; KIVI keeps the last 16 values), 1.8 bits or more on every setting, so the
    # presets end at 3.2 effective bits. Two settings with G = 4, R = 4
    # (3 tokens left) reach 2: vidkv-1 (2.00 bits) and the 1.25-bit setting with scaled ternary values (2.52 bits),
    # so the low end holds a sign and a scaled-ternary value codec, not only magnitude-free ternary ones.
    for name, codec in (("vidkv-1-g4-r4", "{preset: vidkv-1}"),
                        ("vidkv-k1.25-v1.58-scaled-g4-r4",
                         "{preset: vidkv-k1.25-v1.58, value: {reconstruction: scaled}}")):
        lines.append(f"  - {{name: {name}, codec: {codec}, lifecycle: {{group: 4, residual: 4}}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _takes_head_dim(preset, head_dim):
    """Whether both sides of PRESET encode a block of HEAD_DIM channels (vidkv-k1.5-v1.58-fragment's key parts need a
    multiple of 64 channels each, so head_dim 128: SmolLM2's 64 is refused with a ShapeError)."""
    try:
        for side in vidkv.codec({"preset": preset}).values():
            side.layout((1, 64, head_dim))
    except vidkv.ShapeError:
        return False
    return True


def test_replay_and_live_agree_on_bits_for_every_preset_and_the_headline_ranks_settings(smollm2, tmp_path):
    trace = tmp_path / "short.h5"
    rec.record(rec.parser().parse_args(
        ["--model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--gguf", "smollm2", "--prompt", PASSAGE + QUESTION,
         "--question", QUESTION, "--max-new-tokens", "8", "--query-generated", "8", "-o", str(trace)]),
        loaded=smollm2)
    presets = [p for p in _vidkv.presets() if _takes_head_dim(p, 64)]  # SmolLM2-135M: head_dim 64
    assert "vidkv-k1.5-v1.58" in presets and "kivi-2-fragment" in presets
    exp = _experiment(tmp_path / "exp.yaml", trace, presets)
    res = vm.validate(str(exp), [], str(tmp_path / "out"), None, None, loaded=smollm2)
    assert (tmp_path / "out" / "validation.md").is_file()
    assert len(res["live"]) == len(presets) + 3
    for row in res["live"]:
        replayed = res["replay"][row["run"]]["effective_bits"]
        assert abs(row["effective_bits"] - replayed) < 0.01, (row["run"], row["effective_bits"], replayed)
        assert np.isfinite(row["next_token_kl"]) and np.isfinite(row["perplexity"])
    kl = {r["run"]: r["next_token_kl"] for r in res["live"]}
    # fp16 is exact except that the live cache stores full-precision tokens in the trace's fp16 (not the model's
    # float32), as replay does: a KL of about 1e-6 nats.
    assert kl["fp16"] == pytest.approx(0.0, abs=1e-4)
    rho = {c["metric"]: c["rho"] for c in res["correlations"]}
    bits = {r["run"]: r["effective_bits"] for r in res["live"]}
    print(f"\neffective bits {max(bits.values()):.3f} down to {min(bits.values()):.3f}; rho({HEADLINE}) = "
          f"{rho[HEADLINE]:.3f}; per setting: " + ", ".join(f"{k} {v:.3f} (KL {kl[k]:.3f})" for k, v in bits.items()))
    # The settings span 16 effective bits (fp16) down to 2 (vidkv-1 with G = 4, R = 4: 2.000 on this prompt).
    assert max(bits.values()) >= 15.9 and min(bits.values()) <= 2.05, bits
    # Measured on this prompt: 0.917 over these 20 settings (0.948 over the first 18), the same on repeated runs; the
    # bundled trace reaches 0.991 (docs/metric-validation.md). Issue 18's bound is 0.9: with n = 20,
    # rho = 1 - 6 sum d^2 / 7980, so one more swapped adjacent pair costs 0.0015 and the margin is about 11 of them.
    assert rho[HEADLINE] >= 0.9, rho
