"""The composite video LLM (LLaVA-OneVision architecture, SmolLM2 real weights as its language model, untrained
vision path) through vidkv record and vidkv live with a real clip."""
import csv
import json

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

from vidkv import live, record  # noqa: E402
from vidkv.composite import COMPOSITE_LABEL, build_llava_onevision_smollm2  # noqa: E402
from vidkv.video import default_clip  # noqa: E402

QUESTION = "How many people are walking in the street?"


@pytest.fixture(scope="module")
def composite(smollm2, tmp_path_factory):
    return build_llava_onevision_smollm2(tmp_path_factory.mktemp("composite") / "model", smollm2=smollm2)


def test_composite_trace_is_labelled_and_laid_out_by_the_processor(composite, tmp_path):
    out = tmp_path / "c.h5"
    args = record.parser().parse_args(["--model", str(composite), "--video", str(default_clip()), "--frames", "4",
                                       "--prompt", QUESTION + " Answer briefly.", "--question", QUESTION,
                                       "--max-new-tokens", "8", "-o", str(out)])
    summary = record.record(args)
    assert summary["one_pass_greedy_tokens_match_generate"]
    with h5py.File(out, "r") as f:
        assert COMPOSITE_LABEL in f.attrs["model_id"]
        assert f["model"].attrs["num_layers"] == 30 and f["model"].attrs["hidden_size"] == 576
        mod, frame = f["tokens/modality"][:], f["tokens/frame"][:]
        # 112 / 14 = 8 patches per side, pooled to 4 x 4 per frame, + the closing newline.
        assert (mod == 1).sum() == 4 * 16 + 1
        assert np.array_equal(np.unique(frame[mod == 1]), np.arange(4))


def test_composite_live_run_with_video(composite, tmp_path):
    exp = tmp_path / "exp.yaml"
    prompts = [{"text": QUESTION + " Answer briefly.", "question": QUESTION,
                "reference": "There are about ten people walking in the street."}]
    sweep = [{"name": "fp16", "codec": {"preset": "fp16"}}, {"name": "vidkv-2", "codec": {"preset": "vidkv-2"}},
             {"name": "stp", "codec": {"preset": "vidkv-k1.5-v1.66-stp"}}]
    exp.write_text(f"""
name: composite
model: {{id: {composite}, video: {default_clip()}, frames: 4, max_new_tokens: 8, prompts: {json.dumps(prompts)}}}
codec: {{preset: fp16}}
lifecycle: {{type: paper, group: 16, residual: 32}}
sweep: {json.dumps(sweep)}
""")
    out = live.run_live(str(exp), [], str(tmp_path / "res"))
    rows = {r["run"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert all(COMPOSITE_LABEL in r["trace"] for r in rows.values())
    assert float(rows["fp16"]["next_token_kl"]) < 1e-4 and float(rows["fp16"]["greedy_agreement"]) == 1.0
    assert 0 < float(rows["vidkv-2"]["next_token_kl"]) < float(rows["stp"]["next_token_kl"])
    assert all(np.isfinite(float(r["perplexity"])) for r in rows.values())
