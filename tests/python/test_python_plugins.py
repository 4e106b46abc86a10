"""Python-defined plugins (experiments/python/python_quantizer.h): the skeleton examples/plugin-skeletons/python/
py_absmax.py, from `import vidkv` and from YAML through the embedded interpreter of build/bin/vidkv, gives exactly
what the C++ skeleton skeleton_absmax (examples/plugin-skeletons/quantizer, built by tests/CMakeLists.txt) gives."""
import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest

import vidkv

ROOT = Path(__file__).resolve().parents[2]
VIDKV = ROOT / "build" / "bin" / "vidkv"
PY_PLUGIN = ROOT / "examples" / "plugin-skeletons" / "python" / "py_absmax.py"
CPP_PLUGIN = ROOT / "build" / "tests" / "skeleton_quantizer" / "libskeleton_absmax.so"
TRACE = ROOT / "traces" / "data" / "smollm2-135m-longdoc.h5"


def test_python_quantizer_from_import_vidkv_golden_values():
    vidkv.load_plugins(str(PY_PLUGIN))
    assert "py_absmax" in vidkv.plugins()
    q = vidkv.codec({"type": "py_absmax", "bits": 4})
    # bits 4: 7 levels each side; row [1, -2, 4, 0.5]: s = fl(4/7), a little above 4/7, so x / s in float32 =
    # [1.74999997, -3.49999994, 7, 0.87499998] and the codes are [2, -3, 7, 1] (as the C++ skeleton's: test_plugin_
    # loading.cpp); the bytes are the float32 scale then the int8 codes.
    x = np.array([[[1.0, -2.0, 4.0, 0.5]]], dtype=np.float32)
    data = q.encode(x)
    s = np.float32(4.0) / np.float32(7.0)
    assert data == s.tobytes() + np.array([2, -3, 7, 1], dtype=np.int8).tobytes()
    assert q.layout(x.shape).bytes == 8
    np.testing.assert_array_equal(q.decode(data, x.shape), np.array([[[2, -3, 7, 1]]], dtype=np.float32) * s)
    with pytest.raises(vidkv.ConfigError, match=r"bits = 9 is out of range \[2, 8\] for py_absmax"):
        vidkv.codec({"type": "py_absmax", "bits": 9})
    with pytest.raises(vidkv.ConfigError, match="unknown key 'bitz' for py_absmax"):
        vidkv.codec({"type": "py_absmax", "bitz": 2})


def _run(tmp_path, name, quantizer, plugin):
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(f"name: {name}\ntraces: [{TRACE}]\nseed: 1\n"
                   f"codec:\n  key: {{type: {quantizer}, bits: 4}}\n  value: {{type: {quantizer}, bits: 4}}\n"
                   "lifecycle: {type: paper, group: 32, residual: 128}\n"
                   "sweep:\n  - {name: k4, codec: {key: {bits: 4}}}\n  - {name: k2v8, codec: {key: {bits: 2}, value: {bits: 8}}}\n")
    out = tmp_path / name
    subprocess.run([str(VIDKV), "run", str(exp), "--plugin", str(plugin), "--quiet", "--out", str(out)],
                   check=True, cwd=tmp_path, timeout=600)
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not VIDKV.exists() or not CPP_PLUGIN.exists(), reason="needs build/bin/vidkv and the C++ skeleton")
def test_python_quantizer_gives_the_cpp_skeletons_results_csv(tmp_path):
    cpp = _run(tmp_path, "cpp", "skeleton_absmax", CPP_PLUGIN)
    py = _run(tmp_path, "py", "py_absmax", PY_PLUGIN)
    assert len(cpp) == len(py) > 0
    # Every metric column equal as written (the same text); only the wall-clock `seconds`, the experiment name and
    # the plugin's name inside param.codec may differ.
    skip = {"seconds", "experiment", "param.codec"}
    for a, b in zip(cpp, py):
        assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


@pytest.mark.skipif(not VIDKV.exists(), reason="needs build/bin/vidkv")
def test_set_plugins_is_the_list_that_is_loaded(tmp_path):
    """--set plugins=[...] replaces the file's list before any library is loaded (the list config.yaml records)."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"name: p\ntraces: [{TRACE}]\nplugins: [{PY_PLUGIN}]\ncodec: {{preset: fp16}}\n")

    def run(out, *extra):
        return subprocess.run([str(VIDKV), "run", str(exp), "--quiet", "--out", str(tmp_path / out), *extra],
                              capture_output=True, text=True, cwd=tmp_path, timeout=600)

    # The file's plugin is refused without --allow-plugins ...
    r = run("a")
    assert r.returncode != 0 and "refused without --allow-plugins" in r.stderr
    # ... but not once --set empties the list: nothing is loaded, the run needs no plugin.
    r = run("b", "--set", "plugins=[]")
    assert r.returncode == 0, r.stderr
    # A library that --set names is looked for (and not the file's, which would load).
    r = run("c", "--set", "plugins=[missing_plugin.py]", "--allow-plugins")
    assert r.returncode != 0 and "missing_plugin.py" in r.stderr and "not found" in r.stderr
