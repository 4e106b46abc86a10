"""The minimum Python contract of architecture.md section 9, on the real C++ plugins."""
import numpy as np
import pytest

vidkv = pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")


def gaussian(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_uniform_roundtrip_and_layout_match_the_documented_bits():
    q = vidkv.codec({"type": "uniform", "bits": 2, "group": 32, "axis": "channel"})
    x = gaussian(64, 16)
    y = q.roundtrip(x)
    assert y.shape == x.shape and y.dtype == np.float32
    # 2-bit codes on Gaussian data: a relative error well below 1 but far from 0.
    rel = np.linalg.norm(x - y) / np.linalg.norm(x)
    assert 0.05 < rel < 0.6
    lay = q.layout(x.shape)
    # 64 x 16 codes of 2 bits = 256 bytes; 2 token groups x 16 channels x (fp16 scale + fp16 min) = 128 bytes.
    assert lay.bytes == 256 + 128
    assert lay.nominal_bits == 2.0
    assert lay.effective_bits == pytest.approx(3.0)
    assert len(q.encode(x)) == lay.bytes


def test_account_bits_sums_layouts_as_vidkv_run_does():
    x = gaussian(64, 16)
    key = vidkv.codec({"type": "uniform", "bits": 2, "group": 32, "axis": "channel"}).layout(x.shape)
    value = vidkv.codec({"type": "identity"}).layout(x.shape)
    # K: 384 bytes over 1024 values = 3 bits (above); V: fp16 = 2048 bytes = 16 bits. Two layers of each:
    # K+V = 8 * 2 * (384 + 2048) / (2 * 2048) = 9.5 bits, nominal (2 + 16) / 2 = 9; fp16 input: 16 / 9.5.
    bits = vidkv.account_bits([key, key], [value, value], "fp16")
    assert bits == {"key_nominal_bits": 2.0, "value_nominal_bits": 16.0, "key_effective_bits": 3.0,
                    "value_effective_bits": 16.0, "nominal_bits": 9.0, "effective_bits": 9.5,
                    "compression_ratio": 16.0 / 9.5}
    assert vidkv.account_bits([key], [value], "float32")["compression_ratio"] == 32.0 / 9.5
    with pytest.raises(vidkv.ShapeError, match="elements"):
        vidkv.account_bits([], [value], "fp16")
    with pytest.raises(vidkv.ConfigError, match="fp64"):
        vidkv.account_bits([key], [value], "fp64")


def test_three_dimensional_blocks_and_decode():
    q = vidkv.codec({"type": "uniform", "bits": 4})
    x = gaussian(3, 40, 8, seed=1)
    data = q.encode(x)
    y = q.decode(data, x.shape)
    assert np.array_equal(y, q.roundtrip(x))
    with pytest.raises(vidkv.ShapeError):
        q.decode(data[:-1], x.shape)


def test_identity_is_exact_on_fp16_values():
    q = vidkv.codec({"type": "identity"})
    x = gaussian(32, 8).astype(np.float16).astype(np.float32)
    assert np.array_equal(q.roundtrip(x), x)


def test_plugins_presets_and_preset_sides():
    names = vidkv.plugins()
    for p in ("identity", "uniform", "sign", "ternary", "mixed_channel", "mixed_token", "range", "random"):
        assert p in names
    presets = vidkv.presets()
    assert "kivi-2" in presets and "kivi-2" in names
    key = vidkv.codec({"preset": "kivi-2", "part": "key"})
    assert isinstance(key, vidkv.Codec)
    both = vidkv.codec({"preset": "kivi-2"})
    assert set(both) == {"key", "value"} and isinstance(both, dict)
    # Both sides: a Codec's method on the pair says to pick a side (it was "'dict' object has no attribute").
    with pytest.raises(AttributeError, match=r"pick one, e.g. codec\['key'\].roundtrip"):
        both.roundtrip(np.zeros((1, 4, 8), np.float32))


def test_codec_of_anything_but_a_dict_is_a_config_error():
    # A preset's name alone leaked "dictionary update sequence element #0 has length 1", None a TypeError.
    with pytest.raises(vidkv.ConfigError, match=r"expected a dict .* got str 'kivi-2' \(a preset: \{'preset': 'kivi-2'\}"):
        vidkv.codec("kivi-2")
    with pytest.raises(vidkv.ConfigError, match="got NoneType None"):
        vidkv.codec(None)
    assert vidkv.Codec.roundtrip.__doc__ and "ShapeError" in vidkv.Codec.roundtrip.__doc__


def test_errors_name_the_key():
    with pytest.raises(vidkv.ConfigError, match="bits = 9 is out of range"):
        vidkv.codec({"type": "uniform", "bits": 9})
    with pytest.raises(vidkv.ConfigError, match="did you mean 'gamma'"):
        vidkv.codec({"type": "ternary", "gama": 0.5})
    # Non-finite input is a value error (vidkv.ValueError, also Python's ValueError), naming where it is.
    with pytest.raises(vidkv.ValueError, match=r"non-finite value \(nan\) at head 0, token 0, channel 1"):
        vidkv.codec({"type": "uniform"}).roundtrip(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(ValueError):
        vidkv.codec({"type": "uniform"}).roundtrip(np.array([[np.inf, 1.0]], dtype=np.float32))


def test_token_protector_side_data_by_keyword():
    q = vidkv.codec({"type": "mixed_token", "protector": {"type": "semantic_embedding", "fraction": 0.25},
                     "protected": {"type": "identity"}, "rest": {"type": "uniform", "bits": 1}})
    t, hidden = 48, 16
    modality = np.array([0] * 4 + [1] * 40 + [2] * 4, dtype=np.uint8)
    emb = gaussian(t, hidden, seed=2)
    emb[10] = emb[44:48].mean(axis=0) * 10  # visual token 10 aligns with the question: it must be protected
    x = gaussian(t, 8, seed=3)
    y = q.roundtrip(x, modality=modality, embeddings=emb)
    assert np.array_equal(y[10], x[10].astype(np.float16).astype(np.float32))
    with pytest.raises(vidkv.Error):
        q.roundtrip(x, modality=modality)  # semantic_embedding without embeddings


def test_torch_tensors_round_trip_when_torch_is_installed():
    torch = pytest.importorskip("torch")
    q = vidkv.codec({"type": "uniform", "bits": 8})
    x = torch.randn(2, 32, 16, dtype=torch.float16)
    y = q.roundtrip(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float16 and y.shape == x.shape
    assert torch.allclose(y.float(), x.float(), atol=0.05)


def test_summary_table_and_key_as_vidkv_run_prints_them():
    """vidkv live prints its table and key through vidkv run's C++ (result_table.h, column_key.h): numbers to 4
    significant digits, '|' escaped, a missing value empty; the key names only the given columns, live ones too."""
    import _vidkv

    rows = [{"run": "a|b", "lifecycle": "kivi G=32 R=128", "perplexity": 12.3456789, "greedy_agreement": None}]
    table = _vidkv.summary_markdown(rows, ["run", "lifecycle", "perplexity", "greedy_agreement"]).splitlines()
    assert table == ["| run | lifecycle | perplexity | greedy_agreement |", "| --- | --- | --- | --- |",
                     "| a\\|b | kivi G=32 R=128 | 12.35 |  |"]
    key = _vidkv.summary_column_key(["run", "perplexity", "next_token_kl"]).splitlines()
    assert key[0].startswith("key (") and len(key) == 3
    assert key[1].startswith("  perplexity: lower is better") and key[2].startswith("  next_token_kl: lower is better")
    assert _vidkv.summary_column_key(["run"]) == ""
    assert _vidkv.summary_column_key(["perplexity"], live=True).startswith("key (per run, over every prompt:")


def test_live_and_run_share_one_result_writer(tmp_path):
    """Issue 14 item 4: vidkv live writes its result files through the C++ writer of vidkv run: the same CSV
    quoting, JSON (nlohmann) and markdown escaping of '|' in run names."""
    import _vidkv

    rows = [{"experiment": "e", "run": "KIVI | 2-bit, \"quoted\"", "trace": "t", "layer": -1, "kv_head": -1,
             "perplexity": 1.5, "generated_text": "a | b", "missing": None}]
    cols = list(_vidkv.KEY_COLUMNS) + ["perplexity", "generated_text"]
    _vidkv.write_result_files(str(tmp_path), rows, cols, rows, ["run", "perplexity", "generated_text"])
    assert (tmp_path / "results.csv").read_text().splitlines() == [
        "experiment,run,trace,layer,kv_head,perplexity,generated_text",
        'e,"KIVI | 2-bit, ""quoted""",t,-1,-1,1.5,a | b']
    assert (tmp_path / "results.jsonl").read_text() == (
        '{"experiment":"e","run":"KIVI | 2-bit, \\"quoted\\"","trace":"t","layer":-1,"kv_head":-1,'
        '"perplexity":1.5,"generated_text":"a | b"}\n')
    summary = (tmp_path / "summary.md").read_text().splitlines()
    assert summary[2] == '| KIVI \\| 2-bit, "quoted" | 1.5 | a \\| b |'


def test_a_visual_candidate_protector_needs_modality_on_the_data_paths():
    # Without modality= every token counts as context text: a protector taking visual candidates (the default)
    # would protect nothing, silently; encode / roundtrip / decode refuse, layout() answers for that case.
    block = {"type": "mixed_token", "protector": {"type": "random", "fraction": 0.25},
             "protected": {"type": "identity"}, "rest": {"type": "uniform", "bits": 1}}
    q = vidkv.codec(block)
    x = gaussian(48, 8, seed=3)
    for call in (lambda: q.roundtrip(x, seed=1), lambda: q.encode(x, seed=1), lambda: q.decode(b"", (48, 8), seed=1)):
        with pytest.raises(vidkv.ConfigError, match="no modality= was given"):
            call()
    assert q.layout((48, 8)).bytes > 0
    modality = np.array([0] * 8 + [1] * 40, dtype=np.uint8)
    y = q.roundtrip(x, modality=modality, seed=1)
    assert sum(np.array_equal(y[i], x[i].astype(np.float16).astype(np.float32)) for i in range(8, 48)) == 10
    # candidates: context, or the protector `none`: nothing to ask for.
    for other in ({"type": "random", "fraction": 0.25, "candidates": "context"}, {"type": "none"}):
        assert vidkv.codec({**block, "protector": other}).roundtrip(x, seed=1).shape == x.shape


def test_bad_shapes_and_integer_tensors_are_refused():
    q = vidkv.codec({"type": "uniform", "bits": 2})
    with pytest.raises(vidkv.ShapeError, match="negative size"):
        q.layout((-1, 128))
    with pytest.raises(vidkv.ShapeError, match="expected a shape"):
        q.layout((4,))
    torch = pytest.importorskip("torch")
    with pytest.raises(vidkv.ShapeError, match="floating-point"):
        q.roundtrip(torch.ones(64, 128, dtype=torch.int64))
