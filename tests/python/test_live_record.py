"""vidkv.record on real SmolLM2 weights and on tiny video-language models with a real clip."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
h5py = pytest.importorskip("h5py")
vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

from vidkv import record as rec  # noqa: E402
from vidkv.models import load_model  # noqa: E402
from vidkv.video import default_clip, read_frames  # noqa: E402

import live_fixtures  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VIDKV = ROOT / "build" / "bin" / "vidkv"
QUESTION = "What is the capital of France?"


def record_args(out, *extra):
    return rec.parser().parse_args(["--model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--gguf", "smollm2",
                                    "--max-new-tokens", "8", "-o", str(out), *extra])


def test_smollm2_trace_replays_exactly_through_identity(smollm2, tmp_path):
    out = tmp_path / "fr.h5"
    summary = rec.record(record_args(out, "--prompt", f"Question: {QUESTION} Answer briefly.", "--question", QUESTION),
                         loaded=smollm2)
    assert summary["one_pass_greedy_tokens_match_generate"]
    assert "Paris" in summary["answer"]
    assert not (tmp_path / "fr.h5.partial").exists()
    identity = vidkv.codec({"type": "identity", "dtype": "fp16"})
    with h5py.File(out, "r") as f:
        assert f.attrs["schema"] == "vidkv.trace" and f.attrs["source"] == "model"
        assert "SmolLM2" in f.attrs["model_id"]
        T = f["tokens/ids"].shape[0]
        mod = f["tokens/modality"][:]
        # The question span (modality 2) decodes back to the question.
        q_ids = f["tokens/ids"][:][mod == 2]
        assert smollm2.tokenizer.decode(q_ids).strip() == QUESTION
        assert (mod[-summary["generated_tokens"]:] == 3).all()
        layers = f["model"].attrs["num_layers"]
        assert layers == 30 and f["layers/000/key"].shape == (3, T, 64)
        # Replay through identity reproduces the recorded K/V bit for bit.
        for i in range(layers):
            for name in ("key", "value"):
                x = f[f"layers/{i:03d}/{name}"][:].astype(np.float32)
                assert np.array_equal(identity.roundtrip(x), x)
        # The recorded keys are the model's own: recompute layer 5 from a fresh exact pass.
        ids = torch.tensor(f["tokens/ids"][:][None].astype(np.int64))
        with torch.no_grad():
            cache = smollm2.model(input_ids=ids, use_cache=True).past_key_values
        fresh = cache.layers[5].keys[0].half().float().numpy()
        assert np.array_equal(fresh, f["layers/005/key"][:].astype(np.float32))
    if VIDKV.exists():
        r = subprocess.run([str(VIDKV), "trace", "validate", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    folders = {}
    for name, save in (("llava_onevision", live_fixtures.save_tiny_llava_onevision),
                       ("qwen2_5_vl", live_fixtures.save_tiny_qwen2_5_vl)):
        folders[name] = base / name
        save(folders[name], live_fixtures.smollm2_tokenizer())
    return folders


@pytest.mark.parametrize("kind", ["llava_onevision", "qwen2_5_vl"])
def test_video_trace_metadata_matches_the_processor_layout(kind, tiny_models, tmp_path):
    folder = tiny_models[kind]
    out = tmp_path / f"{kind}.h5"
    args = rec.parser().parse_args(["--model", str(folder), "--video", str(default_clip()), "--frames", "4",
                                    "--prompt", "What do the people in the street do?", "--question",
                                    "What do the people in the street do?", "--max-new-tokens", "4", "-o", str(out)])
    summary = rec.record(args)
    loaded = load_model(str(folder))
    # The processor's own ids for the same prompt and frames, computed here independently of vidkv.record.
    proc = loaded.processor
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": args.prompt}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True)
    ref = proc(text=[prompt], videos=[read_frames(default_clip(), 4)], return_tensors="pt")
    ref_ids = ref["input_ids"][0].numpy()
    with h5py.File(out, "r") as f:
        ids = f["tokens/ids"][:]
        mod, frame, patch = f["tokens/modality"][:], f["tokens/frame"][:], f["tokens/patch"][:]
        assert "tiny random" in f.attrs["model_id"]
        n = len(ref_ids)
        assert np.array_equal(ids[:n], ref_ids)
        visual = ref_ids == proc.video_token_id
        assert np.array_equal(mod[:n] == 1, visual)
        vis_frame, vis_patch = frame[:n][visual], patch[:n][visual]
        if kind == "llava_onevision":
            frames = ref["pixel_values_videos"].shape[1]
            side = 2  # 56 / 14 = 4 patches per side, pooled 2x2
            assert visual.sum() == frames * side * side + 1
            # frame-major, row-major, then the closing newline token
            expect_f = np.repeat(np.arange(frames), side * side)
            expect_rc = np.array([(r, c) for _ in range(frames) for r in range(side) for c in range(side)])
            assert np.array_equal(vis_frame[:-1], expect_f) and np.array_equal(vis_patch[:-1], expect_rc)
            assert vis_frame[-1] == frames - 1 and tuple(vis_patch[-1]) == (side - 1, side)
        else:
            t, h, w = (int(x) for x in ref["video_grid_thw"][0])
            m = proc.video_processor.merge_size
            rows, cols = h // m, w // m
            assert visual.sum() == t * rows * cols
            expect_rc = np.array([(r, c) for _ in range(t) for r in range(rows) for c in range(cols)])
            assert np.array_equal(vis_frame, np.repeat(np.arange(t), rows * cols))
            assert np.array_equal(vis_patch, expect_rc)
        assert (frame[~(mod == 1)] == -1).all()
        q = ids[mod == 2]
        assert loaded.tokenizer.decode(q).strip() == args.prompt
        assert f["embeddings"].shape == (len(ids), 64)
    assert summary["modality_counts"]["1"] == int(visual.sum())
    if VIDKV.exists():
        r = subprocess.run([str(VIDKV), "trace", "validate", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_unknown_model_is_a_clear_error_and_nothing_is_written(tmp_path):
    out = tmp_path / "x.h5"
    args = rec.parser().parse_args(["--model", "no-such-org/no-such-model", "--prompt", "hi", "-o", str(out)])
    with pytest.raises(rec.ModelError, match="no-such-org/no-such-model.*never downloads"):
        rec.record(args)
    assert not out.exists() and not (tmp_path / "x.h5.partial").exists()


def test_missing_gguf_weights_is_a_clear_error(tmp_path):
    args = record_args(tmp_path / "x.h5", "--prompt", "hi")
    args.gguf = str(tmp_path / "absent.gguf")
    with pytest.raises(rec.ModelError, match="absent.gguf: no such file"):
        rec.record(args)
    assert list(tmp_path.iterdir()) == []


def test_undecodable_video_is_a_clear_error(tiny_models, tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI not really a video" * 10)
    out = tmp_path / "v.h5"
    args = rec.parser().parse_args(["--model", str(tiny_models["qwen2_5_vl"]), "--video", str(bad), "--prompt", "hi",
                                    "-o", str(out)])
    with pytest.raises(rec.VideoError, match="broken.avi"):
        rec.record(args)
    assert not out.exists() and not (tmp_path / "v.h5.partial").exists()


def test_question_outside_the_prompt_is_a_clear_error(smollm2, tmp_path):
    out = tmp_path / "q.h5"
    with pytest.raises(rec.PromptError, match="not part of the prompt"):
        rec.record(record_args(out, "--prompt", "Tell me a story.", "--question", "What is 2+2?"), loaded=smollm2)
    assert not out.exists()


@pytest.mark.skipif(not VIDKV.exists(), reason="build/bin/vidkv is not built")
def test_vidkv_record_command_reports_user_errors():
    r = subprocess.run([str(VIDKV), "record", "--model", "/nonexistent/model", "--prompt", "hi", "-o", "/tmp/never.h5"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 1
    assert "vidkv record: error: model '/nonexistent/model': no such local folder" in r.stderr
