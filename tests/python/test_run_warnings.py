"""`vidkv run`'s messages: it says when a setting cannot do what it asks on the trace at hand, instead of running
silently (a prefill longer than the trace, a codec that never quantized anything: every token in the residual
window), and its progress lines off a terminal give the exact percentage done."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VIDKV = ROOT / "build" / "bin" / "vidkv"
TRACE = ROOT / "traces" / "data" / "synthetic-default.h5"  # 2 KV heads x 1024 tokens x 64 channels

pytestmark = pytest.mark.skipif(not VIDKV.exists(), reason="build/bin/vidkv is not built")


def run(tmp_path, body):
    exp = tmp_path / "e.yaml"
    exp.write_text(f"name: e\ntraces: [{TRACE}]\n" + body)
    return subprocess.run([str(VIDKV), "run", str(exp), "--out", str(tmp_path / "out"), "--quiet"],
                          capture_output=True, text=True)


def test_a_prefill_longer_than_the_trace_is_a_warning(tmp_path):
    res = run(tmp_path, "codec: {preset: kivi-2}\nlifecycle: {prefill_tokens: 5000}\nmetrics: [key_rel_error]\n")
    assert res.returncode == 0, res.stderr
    assert ("lifecycle.prefill_tokens = 5000 exceeds the trace's 1024 tokens; the whole trace is the prefill"
            in res.stderr)


def test_a_codec_that_never_quantized_gets_a_note(tmp_path):
    # R = 2048 > 1024 tokens under kivi: no key block, no value leaves the window; fp16 (identity) gets no note.
    res = run(tmp_path, "codec: {preset: kivi-2}\nlifecycle: {residual: 2048}\nmetrics: [key_rel_error, value_rel_error]\n"
                        "sweep:\n  - {name: k2, codec: {preset: kivi-2}}\n  - {name: f16, codec: {preset: fp16}}\n")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "key_rel_error and value_rel_error are exactly 0 for 'k2' (G=32 R=2048)" in out
    assert "'f16'" not in out.split("exactly 0 for", 1)[1].split("\n", 1)[0]


def test_progress_lines_off_a_terminal_give_the_exact_percentage(tmp_path):
    # 3 runs x 8 layers = 24 units: a line at each tenth passed, e.g. 3/24 (12%), which read "(10%)" before.
    exp = tmp_path / "p.yaml"
    exp.write_text(f"name: p\ntraces: [{TRACE}]\ncodec: {{preset: kivi-2}}\nmetrics: [key_rel_error]\n"
                   "sweep:\n  codec.key.bits: [2, 3, 4]\n")
    res = subprocess.run([str(VIDKV), "run", str(exp), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = re.findall(r": (\d+)/(\d+) \((\d+)%\)", res.stderr)
    assert len(lines) >= 5 and any(int(pct) % 10 for _, _, pct in lines), res.stderr
    for done, total, pct in lines:
        assert int(pct) == 100 * int(done) // int(total), (done, total, pct)
