"""Trace reading, channel statistics (hand-worked literals) and the trace plots."""

import os

import numpy as np
import pytest
from analysis_fixtures import (OUTLIER_CHANNELS, QUIET_MATPLOTLIB, TRACE_HEAD_DIM, TRACE_KV_HEADS,  # noqa: F401
                               assert_valid_png, tiny_trace, write_trace)

from vidkv_analysis import channel_stats as cs
from vidkv_analysis.cli import main
from vidkv_analysis.trace import Trace, protected_tokens, semantic_scores
from vidkv_analysis.trace_plots import fft_channel_study, make_trace_plots

pytestmark = QUIET_MATPLOTLIB


@pytest.mark.parametrize("dtype", ["float16", "float32", "bfloat16"])
def test_reader_decodes_every_dtype(tmp_path, dtype):
    path = str(tmp_path / f"t_{dtype}.h5")
    written = write_trace(path, dtype=dtype)
    with Trace(path) as tr:
        assert tr.layers == [0, 1, 2]
        assert tr.num_kv_heads == TRACE_KV_HEADS and tr.head_dim == TRACE_HEAD_DIM
        for layer in tr.layers:
            k = tr.layer(layer, "key")
            assert k.dtype == np.float32 and k.shape == (TRACE_KV_HEADS, tr.num_tokens, TRACE_HEAD_DIM)
            np.testing.assert_array_equal(k, written["keys"][layer])
            np.testing.assert_array_equal(tr.layer(layer, "value"), written["values"][layer])
        np.testing.assert_array_equal(tr.embeddings(), written["embeddings"])


def test_reader_rejects_other_schema(tmp_path):
    import h5py
    path = str(tmp_path / "other.h5")
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "something.else"
    with pytest.raises(ValueError, match="vidkv.trace"):
        Trace(path)


def test_channel_scores_worked_example():
    # tokens x channels:      ch0  ch1
    x = np.array([[1.0, -2.0],
                  [3.0, 0.0],
                  [-1.0, 10.0],
                  [1.0, 0.0]])
    # range: ch0 3 - (-1) = 4; ch1 10 - (-2) = 12
    np.testing.assert_allclose(cs.channel_range(x), [4.0, 12.0])
    # variance: ch0 mean 1, squared deviations 0 4 4 0 -> 2; ch1 mean 2, 16 4 64 4 -> 22
    np.testing.assert_allclose(cs.channel_variance(x), [2.0, 22.0])
    # outliers |x| > 3 mean|x|: ch0 mean 1.5 -> threshold 4.5, none; ch1 mean 3 -> threshold 9, only 10
    np.testing.assert_allclose(cs.channel_outlier_count(x), [0.0, 1.0])
    # [H, T, D] pools the heads (the release's per-layer scope)
    np.testing.assert_allclose(cs.channel_range(np.stack([x, x + 1.0])), [5.0, 13.0])


def test_selection_count_rule():
    assert cs.selected_count(128, 0.5) == 64      # 1.5-bit keys
    assert cs.selected_count(128, 0.25) == 32     # 1.25-bit keys
    assert cs.selected_count(128, 0.75) == 96     # 1.75-bit keys
    assert cs.selected_count(16, 0.01) == 16      # int() gives 0 at a positive ratio: 32, capped at D
    assert cs.selected_count(128, 0.0) == 0
    np.testing.assert_array_equal(cs.select_top(np.array([1.0, 5.0, 3.0, 5.0]), 0.5), [1, 3])


def test_sign_quantizer_worked_example():
    # s = mean |[1, -2, 3, -1]| = 7/4; x >= 0 -> s, x < 0 -> 0
    np.testing.assert_allclose(cs.sign_quantize(np.array([1.0, -2.0, 3.0, -1.0]), None), [1.75, 0, 1.75, 0])
    # groups of 2: s = 1.5 then 2; zero counts as non-negative
    np.testing.assert_allclose(cs.sign_quantize(np.array([1.0, -2.0, 0.0, -4.0]), 2), [1.5, 0, 2.0, 0])


def test_semantic_score_worked_example():
    modality = np.array([1, 1, 2, 2])
    e = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 4.0]])
    visual, scores = semantic_scores(e, modality)
    # token 0: mean(<e0,e2> = 2, <e0,e3> = 0) = 1; token 1: mean(0, 4) = 2
    np.testing.assert_array_equal(visual, [0, 1])
    np.testing.assert_allclose(scores, [1.0, 2.0])
    np.testing.assert_array_equal(protected_tokens(visual, scores, 0.5), [1])
    assert semantic_scores(e, np.array([1, 1, 0, 0])) is None  # no query text


def test_fft_study_finds_normal_channel(tiny_trace):
    with Trace(tiny_trace) as tr:
        st = fft_channel_study(tr.layer(0, "key")[0], fraction=0.25)
    assert st["channel"] not in OUTLIER_CHANNELS
    assert st["normal_count"] == TRACE_HEAD_DIM - 4
    assert st["time"].shape == st["fft_real"].shape
    assert st["error_time"] > 0 and st["error_fft"] > 0 and st["error_fft_path"] > 0


def test_range_selection_marks_outlier_channels(tiny_trace):
    with Trace(tiny_trace) as tr:
        chosen = cs.select_top(cs.channel_range(tr.layer(1, "key")), 2 / TRACE_HEAD_DIM)
    np.testing.assert_array_equal(chosen, OUTLIER_CHANNELS)


def test_every_trace_plot_is_a_valid_png(tiny_trace, tmp_path):
    out = tmp_path / "plots"
    plots = make_trace_plots(tiny_trace, str(out), layers=[0, 2], heads=[0, 1])
    # per layer: 2 magnitude + 1 profile + 2 FFT; plus the visual layout
    assert len(plots) == 2 * 5 + 1
    for p in plots:
        assert p.path, f"{p.title}: {p.note}"
        assert_valid_png(p.path)
    assert {os.path.basename(p.path) for p in plots} >= {"magnitude_l000_h1.png", "channels_l002.png",
                                                         "fft_channel_l002_h0.png", "visual_layout.png"}


def test_visual_layout_without_embeddings_still_draws_with_note(tmp_path):
    path = str(tmp_path / "noemb.h5")
    write_trace(path, embeddings=False)
    plots = make_trace_plots(path, str(tmp_path / "p"), layers=[0])
    layout = plots[-1]
    assert "no /embeddings" in layout.note
    assert_valid_png(layout.path)


def test_text_only_trace_omits_layout(tmp_path):
    path = str(tmp_path / "text.h5")
    write_trace(path, visual=False, embeddings=False)
    plots = make_trace_plots(path, str(tmp_path / "p"), layers=[1])
    assert plots[-1].path is None and "no visual tokens" in plots[-1].note
    for p in plots[:-1]:
        assert_valid_png(p.path)


def test_cli_trace_plots(tiny_trace, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["trace-plots", tiny_trace, "--out", str(out), "--layers", "1", "--heads", "0"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4
    for p in printed:
        assert_valid_png(p)
    assert main(["trace-plots", tiny_trace, "--out", str(out), "--layers", "7"]) == 1  # no such layer
