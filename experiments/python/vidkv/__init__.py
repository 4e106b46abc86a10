"""VidKV: low-bit KV-cache quantization of video LLMs, from Python.

    import vidkv
    q = vidkv.codec({"type": "uniform", "bits": 2, "group": 32, "axis": "channel"})
    y = q.roundtrip(x)              # x: float32 [tokens, channels] or [heads, tokens, channels]; numpy or torch
    q.layout(x.shape)               # .bytes, .nominal_bits, .effective_bits
    vidkv.account_bits([key layouts], [value layouts], "fp16")  # the bits columns of `vidkv run`
    vidkv.plugins(); vidkv.presets()
    vidkv.codec({"preset": "kivi-2", "part": "key"})

Torch tensors (CPU) of floating-point values are accepted wherever numpy arrays are, and results come back as
tensors of the input's dtype and device. Side data of token protectors goes by keyword: modality= ([tokens] uint8:
0 context text, 1 visual, 2 query text, 3 generated), embeddings= ([tokens, hidden]), queries= / query_positions=;
a codec whose protector takes visual candidates (the STP presets) refuses encode / roundtrip without modality=. The C++ extension `_vidkv` is built by scripts/setup.sh (CMake option VIDKV_ENABLE_PYTHON).
"""
from __future__ import annotations

import numpy as _np

try:
    import _vidkv
except ImportError as exc:  # pragma: no cover - message for a missing build
    raise ImportError(
        "vidkv: the C++ extension _vidkv is not built; run scripts/setup.sh (it configures with "
        "-DVIDKV_ENABLE_PYTHON=ON and registers the module in .venv)") from exc

ConfigError = _vidkv.ConfigError
ShapeError = _vidkv.ShapeError
ValueError = _vidkv.ValueError  # noqa: A001 - also a subclass of the built-in ValueError (non-finite input)
Error = _vidkv.Error
NotSupportedError = _vidkv.NotSupportedError
IoError = _vidkv.IoError
CudaError = _vidkv.CudaError
Layout = _vidkv.Layout
account_bits = _vidkv.account_bits  # bits columns from stored Layouts (core/bits_accounting.h)
register_plugin = _vidkv.register_plugin  # a Python quantizer class (docs/writing-a-plugin.md, "Python plugins")
load_plugins = _vidkv.load_plugins  # a Python file with VIDKV_PLUGINS = [Class, ...]

__all__ = ["codec", "CodecPair", "plugins", "presets", "describe", "register_plugin", "load_plugins", "Codec", "Layout", "account_bits", "ConfigError", "ShapeError", "ValueError", "Error",
           "NotSupportedError", "IoError", "CudaError"]


def _to_numpy(x, what="input"):
    """(numpy float32 array, restore function) for a numpy array (converted to float32; the result stays float32) or
    a torch tensor of floating-point values (the result is cast back to its dtype and device); ShapeError for an
    integer or boolean tensor, whose decoded values would be cut to integers by that cast."""
    if type(x).__module__.startswith("torch"):
        import torch  # only when given a tensor

        if not x.is_floating_point():
            raise ShapeError(f"{what}: expected floating-point values (fp16, bf16, fp32), got a tensor of {x.dtype}")
        dtype, device = x.dtype, x.device
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return arr, lambda y: torch.from_numpy(_np.ascontiguousarray(y)).to(device=device, dtype=dtype)
    return _np.ascontiguousarray(x, dtype=_np.float32), lambda y: y


def _side(kwargs):
    out = {}
    for k, v in kwargs.items():
        if k in ("modality", "embeddings", "queries"):
            v, _ = _to_numpy(v, k) if k != "modality" else (_np.asarray(v, dtype=_np.uint8), None)
        out[k] = v
    return out


class Codec:
    """One quantizer pipeline built from a dict with the keys of a YAML block."""

    def __init__(self, native):
        self._native = native

    def roundtrip(self, x, **side):
        """decode(encode(x)): x [KV heads, tokens, head_dim] (numpy array, or a floating-point torch tensor, returned
        in its dtype and device), float32 on the host. side: modality=, embeddings=, queries= for token protectors
        that read them. Raises ShapeError (rank, dtype, a shape the codec refuses), ValueError (NaN / Inf, naming
        head, token and channel)."""
        arr, restore = _to_numpy(x)
        return restore(self._native.roundtrip(arr, **_side(side)))

    def encode(self, x, **side) -> bytes:
        """The packed bytes of x [KV heads, tokens, head_dim] (layout(x.shape).bytes of them); as roundtrip."""
        arr, _ = _to_numpy(x)
        return self._native.encode(arr, **_side(side))

    def decode(self, data: bytes, shape, **side):
        """The float32 values [KV heads, tokens, head_dim] of bytes that encode wrote for `shape`."""
        return self._native.decode(data, list(shape), **_side(side))

    def layout(self, shape, **side) -> Layout:
        """The packed layout of a block of `shape` (sections, bytes, nominal and effective bits); ShapeError where
        the codec cannot take that shape."""
        return self._native.layout(list(shape), **_side(side))

    @property
    def config(self) -> str:
        return self._native.config

    def __repr__(self):
        return f"vidkv.Codec({self.config})"


class CodecPair(dict):
    """{'key': Codec, 'value': Codec}: what codec() returns for both sides. A plain dict, except that asking it for a
    Codec's method (pair.roundtrip) says to pick a side first."""

    def __getattr__(self, name):
        if name in ("roundtrip", "encode", "decode", "layout", "config"):
            raise AttributeError(f"a codec of both sides is {{'key': Codec, 'value': Codec}}: pick one, e.g. "
                                 f"codec['key'].{name}(...), or ask for one side with {{'preset': NAME, 'part': 'key'}}")
        raise AttributeError(name)


def codec(config: dict):
    """A Codec for {'type': ...} or {'preset': NAME, 'part': 'key'|'value'}; a CodecPair (a dict {'key': Codec,
    'value': Codec}) for {'preset': NAME} or {'key': ..., 'value': ...}. ConfigError for anything but a dict, and
    for the dict's errors (unknown keys with a suggestion, values out of range)."""
    if not isinstance(config, dict):
        hint = ""
        if isinstance(config, str):
            hint = f" (a preset: {{'preset': {config!r}}}; a plugin: {{'type': {config!r}}})"
        raise ConfigError(f"vidkv.codec: expected a dict such as {{'type': 'uniform', 'bits': 2}} or "
                          f"{{'preset': 'kivi-2'}}, got {type(config).__name__} {config!r}{hint}")
    native = _vidkv.codec(dict(config))
    if isinstance(native, dict):
        return CodecPair({k: Codec(v) for k, v in native.items()})
    return Codec(native)


def plugins() -> list[str]:
    """Names of every registered plugin and preset."""
    return list(_vidkv.plugins())


def presets() -> list[str]:
    """Names of every preset."""
    return list(_vidkv.presets())


def describe(name: str) -> dict:
    """A plugin's family, summary and parameters (type, default, range, description)."""
    return dict(_vidkv.describe(name))
