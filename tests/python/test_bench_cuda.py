"""`vidkv bench --backend cuda` and its PyTorch half (experiments/python/vidkv/bench_cuda.py).

The torch math is checked on the CPU (it is device-agnostic): on a synthetic layer its reconstruction error is the
one of the preset's own codec within 0.1% (same math; they differ only where the codec rounds its scales to fp16,
measured ~1e-5 relative, so a broken packing or unpacking would show as an error far off), and its packed tensors really are bits (int32 words / uint8 bytes of the expected counts). The
command itself runs the torch column in the vidkv process on a GPU, and says why it cannot run without one."""
import math

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
_vidkv = pytest.importorskip("_vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

from vidkv import bench_cuda  # noqa: E402

from test_embedded_python import VIDKV, VENV_PYTHON, assert_in_vidkv_process, run_vidkv  # noqa: E402


def _layer():
    k, v = _vidkv.synthetic_layer("1x2x256x64", 0)
    return torch.from_numpy(k), torch.from_numpy(v)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _codec_error(preset, k, v):
    codecs = _vidkv.codec({"preset": preset})
    kh = codecs["key"].roundtrip(k.numpy())
    vh = codecs["value"].roundtrip(v.numpy())
    return _rel(torch.from_numpy(kh), k), _rel(torch.from_numpy(vh), v)


@pytest.mark.parametrize("preset", ["kivi-2", "vidkv-k1.5-v1.58"])
def test_torch_math_reconstructs_as_the_presets_codec(preset):
    k, v = _layer()
    packed, decode = bench_cuda.PRESETS[preset](torch, k, v)
    k_hat, v_hat = decode()
    assert k_hat.shape == k.shape and v_hat.shape == v.shape
    ours = _codec_error(preset, k, v)
    theirs = (_rel(k_hat, k), _rel(v_hat, v))
    for a, b in zip(theirs, ours):
        assert math.isfinite(a) and abs(a - b) <= 1e-3 * b, (preset, theirs, ours)


def test_torch_math_packs_real_bits():
    k, v = _layer()
    (kp, vp), _ = bench_cuda.kivi2(torch, k, v)
    assert kp[0].dtype == torch.int32 and kp[0].numel() == k.numel() * 2 // 32  # 16 two-bit codes per word
    assert vp[0].dtype == torch.int32 and vp[0].numel() == v.numel() * 2 // 32
    (hp, lp, tp, _), _ = bench_cuda.vidkv_k15_v158(torch, k, v)
    assert lp[0].dtype == torch.int32 and lp[0].numel() == k.numel() // 2 // 32  # 32 signs per word, half the channels
    assert tp.dtype == torch.uint8 and tp.numel() == math.ceil(v.numel() / 5)  # 5 trits per byte


@pytest.mark.skipif(not VIDKV.exists() or not VENV_PYTHON.exists(), reason="needs build/bin/vidkv and .venv")
def test_cuda_bench_runs_torch_in_the_vidkv_process(tmp_path):
    if not torch.cuda.is_available():
        for extra in (["--no-torch"], []):  # the C++ command alone, and through the embedded Python
            code, out, err, _, _ = run_vidkv(tmp_path, "bench", "--backend", "cuda", *extra)
            assert code == 1 and "vidkv bench --backend cuda:" in err and "Traceback" not in err, (out, err)
        pytest.skip("no CUDA device: checked that vidkv bench --backend cuda says why it cannot run")
    code, out, err, pid, probe = run_vidkv(tmp_path, "bench", "--backend", "cuda", "--tokens", "256", "--layers", "2",
                                           "--repeats", "2")
    assert code == 0, err
    assert_in_vidkv_process(pid, probe)
    assert "device-to-device copy" in out and "same process" in out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| kivi-2 ")]
    assert len(rows) == 1, out
    cells = rows[0]
    ours, torch_gbps, ratio = float(cells[5]), float(cells[9]), float(cells[10].strip().rstrip("x"))
    assert ours > 0 and torch_gbps > 0 and ratio > 0
