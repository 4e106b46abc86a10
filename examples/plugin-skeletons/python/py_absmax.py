"""py_absmax: the Python quantizer skeleton (docs/writing-a-plugin.md, "Python plugins").

The same arithmetic as the C++ skeleton examples/plugin-skeletons/quantizer/skeleton_absmax.cpp, in numpy, so the
two give the same bytes and the same results.csv (tests/python/test_python_plugins.py): symmetric per-token absmax,
each row (one token of one KV head) stores s = max|x| / (2^(bits-1) - 1) as float32 and one int8 code
q = rint(x / s) per value, clamped to +-(2^(bits-1) - 1) (rint: round half to even, as std::nearbyint); decode
x' = q * s in float32. Layout: "scales" (heads * tokens float32), then "codes" (heads * tokens * channels int8).

Use it from YAML (`plugins: [py_absmax.py]` with `vidkv run --allow-plugins`, or `vidkv run --plugin py_absmax.py`)
or from Python (`vidkv.load_plugins("py_absmax.py"); vidkv.codec({"type": "py_absmax", "bits": 4})`).
"""
import numpy as np


class PyAbsmax:
    name = "py_absmax"
    summary = "symmetric per-token absmax, fp32 scale + one int8 code per value (Python plugin skeleton)"
    params = {"bits": {"default": 4, "min": 2, "max": 8, "unit": "bits",
                       "description": "code bits per value (symmetric, 2^(bits-1)-1 levels each side)"}}

    def __init__(self, bits):
        self.top = np.float32((1 << (bits - 1)) - 1)
        self.bits = bits

    def layout(self, shape):
        heads, tokens, channels = shape
        rows = heads * tokens
        return self.bits, [("scales", "scales", rows * 4), ("codes", "codes", rows * channels)]

    def encode(self, x):
        rows = x.reshape(-1, x.shape[-1]).astype(np.float32, copy=False)
        s = (np.abs(rows).max(axis=1) / self.top).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(s[:, None] > 0, np.clip(np.rint(rows / s[:, None]), -self.top, self.top), np.float32(0))
        return s.astype("<f4").tobytes() + q.astype(np.int8).tobytes()

    def decode(self, data, shape):
        heads, tokens, channels = shape
        rows = heads * tokens
        s = np.frombuffer(data, dtype="<f4", count=rows)
        q = np.frombuffer(data, dtype=np.int8, offset=rows * 4, count=rows * channels).reshape(rows, channels)
        return (q.astype(np.float32) * s[:, None]).reshape(heads, tokens, channels)


VIDKV_PLUGINS = [PyAbsmax]
