"""Per-channel statistics of a key/value slab and the 1-bit sign quantizer, in numpy (algorithms.md 2.2, 3.1, 3.3).

These are plotting aids, not the oracle: the C++ CPU reference is. They follow the same definitions:
- range: max - min of the channel over tokens (and over heads when the scope is the layer);
- variance: population variance of the channel;
- outlier count: tokens with |x| > M * mean(|x|) of the channel, M = 3 (the absolute variant, the default);
- selection: the k = int(D * fraction) channels with the largest score (32 when that is 0 and fraction > 0).
"""

from __future__ import annotations

import numpy as np

OUTLIER_FACTOR = 3.0  # M in algorithms.md 3.1


def _as_tokens_by_channels(x: np.ndarray) -> np.ndarray:
    """[T, D] or [H, T, D] (pooled over heads, the release's per-layer scope) -> [N, D] float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        return x.reshape(-1, x.shape[-1])
    if x.ndim != 2:
        raise ValueError(f"expected [tokens, channels] or [heads, tokens, channels], got shape {x.shape}")
    return x


def channel_range(x) -> np.ndarray:
    x = _as_tokens_by_channels(x)
    return x.max(axis=0) - x.min(axis=0)


def channel_variance(x) -> np.ndarray:
    return _as_tokens_by_channels(x).var(axis=0)


def channel_outlier_count(x, factor: float = OUTLIER_FACTOR) -> np.ndarray:
    a = np.abs(_as_tokens_by_channels(x))
    return (a > factor * a.mean(axis=0, keepdims=True)).sum(axis=0).astype(np.float64)


SCORES = {"range": channel_range, "variance": channel_variance, "outlier": channel_outlier_count}


def selected_count(num_channels: int, fraction: float) -> int:
    k = int(num_channels * fraction)
    if k == 0 and fraction > 0:
        k = min(32, num_channels)
    return min(k, num_channels)


def select_top(score: np.ndarray, fraction: float) -> np.ndarray:
    """Ascending indices of the top-`fraction` channels by score (stable: lower index wins a tie)."""
    k = selected_count(score.shape[0], fraction)
    order = np.argsort(-score, kind="stable")[:k]
    return np.sort(order)


def sign_quantize(x: np.ndarray, group: int | None = 32) -> np.ndarray:
    """VidKV 1-bit along axis 0: per group of `group` consecutive entries s = mean(|x|); reconstruction s where
    x >= 0, 0 where x < 0 (paper Eq. 5). group=None uses one group for the whole vector."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    n = x.shape[0]
    step = n if not group else group
    for start in range(0, n, step):
        g = x[start:start + step]
        s = np.abs(g).mean(axis=0)
        out[start:start + step] = np.where(g >= 0, s, 0.0)
    return out


def fft_along_channels(x: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Complex FFT (unnormalised forward) along the gathered channels of each token: x [T, D] -> [T, n]."""
    return np.fft.fft(np.asarray(x, dtype=np.float64)[:, channels], axis=1)


def quantization_error(x: np.ndarray, xq: np.ndarray) -> float:
    """L2 norm of the error, ||x - x'||_2."""
    return float(np.linalg.norm(np.asarray(x) - np.asarray(xq)))
