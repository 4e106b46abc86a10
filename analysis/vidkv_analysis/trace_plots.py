"""Plots of one trace: what the quantizers see (paper Fig. 1 and Fig. 3, channel selection, token protection).

Every function writes one PNG and returns a `Plot` (path, title, caption); a plot that cannot be drawn from the
trace (no visual tokens, no embeddings) is returned with `path=None` and the reason in `note`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import channel_stats as cs
from .figures import new_figure, save
from .trace import (MODALITY_NAMES, MODALITY_VISUAL, Trace, protected_tokens, semantic_scores)


@dataclass
class Plot:
    title: str
    path: str | None
    caption: str = ""
    note: str = ""


def plot_magnitudes(trace: Trace, layer: int, head: int, out_path) -> Plot:
    """Paper Fig. 1: |K| and |V| per channel x token of one layer and KV head."""
    k = np.abs(trace.layer(layer, "key")[head])
    v = np.abs(trace.layer(layer, "value")[head])
    fig, axes = new_figure(9.0, 3.6, 1, 2)
    for ax, data, name in ((axes[0, 0], k, "|K|"), (axes[0, 1], v, "|V|")):
        im = ax.imshow(data, aspect="auto", interpolation="nearest", cmap="viridis", origin="lower")
        ax.set_title(f"{name}  layer {layer}, head {head}")
        ax.set_xlabel("channel")
        ax.set_ylabel("token")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    caption = ("Magnitude of keys and values per channel (x) and token (y). Keys show a few channels with large "
               "magnitude over all tokens (outlier channels); values have no such channel structure.")
    return Plot(f"|K| and |V|, layer {layer}, head {head}", save(fig, out_path), caption)


def plot_channel_profiles(trace: Trace, layer: int, out_path, fraction: float = 0.5, head: int | None = None,
                          kind: str = "key") -> Plot:
    """Per-channel range, variance and outlier count with the top-`fraction` channels of each metric marked."""
    x = trace.layer(layer, kind)
    x = x if head is None else x[head]
    scope = "all heads of the layer" if head is None else f"head {head}"
    fig, axes = new_figure(8.0, 5.4, 3, 1, sharex=True)
    d = x.shape[-1]
    channels = np.arange(d)
    for ax, metric in zip(axes[:, 0], ("range", "variance", "outlier")):
        score = cs.SCORES[metric](x)
        chosen = cs.select_top(score, fraction)
        mask = np.zeros(d, dtype=bool)
        mask[chosen] = True
        ax.bar(channels[~mask], score[~mask], color="#9aa7b8", width=0.9, label="normal (1-bit)")
        ax.bar(channels[mask], score[mask], color="#d1495b", width=0.9,
               label=f"selected top {fraction:g} ({mask.sum()} ch., 2-bit)")
        label = {"range": "range (max - min)", "variance": "variance",
                 "outlier": f"outliers |x| > {cs.OUTLIER_FACTOR:g} mean|x|"}[metric]
        ax.set_ylabel(label)
        ax.legend(loc="upper right")
    axes[0, 0].set_title(f"{kind} channel profiles, layer {layer} ({scope})")
    axes[-1, 0].set_xlabel("channel")
    caption = (f"Per-channel selection scores of the {kind}s (over {scope}); red bars are the channels each metric "
               f"would keep at 2 bits (k = int(D x {fraction:g})), grey ones go to the 1-bit path.")
    return Plot(f"{kind} channel profiles, layer {layer}", save(fig, out_path), caption)


def fft_channel_study(keys: np.ndarray, fraction: float = 0.5, group: int | None = 32):
    """Paper Fig. 3 data for one slab keys [T, D]: the median-range normal (unselected by range) channel,
    its time-domain values, the real part of the same position after the FFT along the normal channels, and the
    1-bit sign quantization error (L2) of each. Returns a dict."""
    rng = cs.channel_range(keys)
    chosen = cs.select_top(rng, fraction)
    normal = np.setdiff1d(np.arange(keys.shape[1]), chosen)
    if normal.size == 0:
        raise ValueError("no normal channel left: the selection fraction keeps every channel")
    # The normal channel of median range: typical of what the 1-bit path receives.
    pos = int(np.argsort(rng[normal], kind="stable")[normal.size // 2])
    channel = int(normal[pos])
    time = keys[:, channel].astype(np.float64)
    spectrum = cs.fft_along_channels(keys, normal)
    fft_real = spectrum[:, pos].real
    err_time = cs.quantization_error(time, cs.sign_quantize(time, group))
    err_fft = cs.quantization_error(fft_real, cs.sign_quantize(fft_real, group))
    # The whole 1-bit FFT path (algorithms.md 3.3): 1-bit on every real and imaginary component, inverse FFT,
    # real part; the error it leaves on this channel, comparable with err_time.
    rebuilt = cs.sign_quantize(spectrum.real, group) + 1j * cs.sign_quantize(spectrum.imag, group)
    err_path = cs.quantization_error(time, np.fft.ifft(rebuilt, axis=1)[:, pos].real)
    norm_time = float(np.linalg.norm(time)) or 1.0
    norm_fft = float(np.linalg.norm(fft_real)) or 1.0
    return {"channel": channel, "position": pos, "normal_count": int(normal.size), "time": time,
            "fft_real": fft_real, "error_time": err_time, "error_fft": err_fft,
            "rel_error_time": err_time / norm_time, "rel_error_fft": err_fft / norm_fft,
            "error_fft_path": err_path, "rel_error_fft_path": err_path / norm_time}


def plot_fft_channel(trace: Trace, layer: int, head: int, out_path, fraction: float = 0.5,
                     group: int | None = 32) -> Plot:
    """Paper Fig. 3: histogram of a normal key channel before and after the FFT along channels."""
    st = fft_channel_study(trace.layer(layer, "key")[head], fraction, group)
    fig, axes = new_figure(8.0, 3.0, 1, 2)
    for ax, data, err, rel, name, color in (
            (axes[0, 0], st["time"], st["error_time"], st["rel_error_time"],
             f"time domain, channel {st['channel']}", "#2e86ab"),
            (axes[0, 1], st["fft_real"], st["error_fft"], st["rel_error_fft"],
             f"after FFT (real part), position {st['position']} of {st['normal_count']}", "#f18f01")):
        ax.hist(data, bins=40, color=color, alpha=0.85)
        ax.axvline(0.0, color="black", lw=0.6)
        ax.set_title(f"{name}\n1-bit error ||x - x'|| = {err:.3g} (relative {rel:.3g})")
        ax.set_xlabel("value")
        ax.set_ylabel("tokens")
    g = "the whole channel" if not group else f"groups of {group} tokens"
    caption = (f"A normal (unselected, median-range) key channel of layer {layer}, head {head}, before and after "
               f"the FFT along the {st['normal_count']} normal channels. Errors are of the VidKV 1-bit quantizer "
               f"(s = mean|x| over {g}, reconstruction s for x >= 0, else 0), each in its own domain (the "
               f"unnormalised FFT scales values, so compare the relative errors). Through the whole FFT path "
               f"(1-bit real and imaginary parts, inverse FFT) this channel's error is {st['error_fft_path']:.3g} "
               f"(relative {st['rel_error_fft_path']:.3g}) against {st['error_time']:.3g} in the time domain. "
               f"Paper Fig. 3: 2.39 -> 1.14.")
    return Plot(f"Normal key channel before/after FFT, layer {layer}, head {head}", save(fig, out_path), caption)


def plot_visual_layout(trace: Trace, out_path, protect_fraction: float = 0.2) -> Plot:
    """Visual tokens as a grid of patches per frame, coloured by STP semantic score; protected tokens marked."""
    title = "Visual tokens by frame and protected tokens"
    visual = np.flatnonzero(trace.modality == MODALITY_VISUAL)
    if visual.size == 0 or trace.frame is None or trace.patch is None:
        counts = ", ".join(f"{MODALITY_NAMES.get(int(m), m)}: {int((trace.modality == m).sum())}"
                           for m in np.unique(trace.modality))
        return Plot(title, None, note=f"The trace has no visual tokens ({counts}); no layout to draw.")
    frames = trace.frame[visual]
    rows, cols = trace.patch[visual, 0], trace.patch[visual, 1]
    note = ""
    score = np.full(trace.num_tokens, np.nan)
    protected = np.zeros(trace.num_tokens, dtype=bool)
    if trace.has_embeddings:
        res = semantic_scores(trace.embeddings(), trace.modality)
        if res is None:
            note = "No query-text tokens: semantic scores and protected tokens omitted."
        else:
            vis_idx, sc = res
            score[vis_idx] = sc
            protected[protected_tokens(vis_idx, sc, protect_fraction)] = True
    else:
        note = "The trace has no /embeddings: semantic scores and protected tokens omitted."
    unique_frames = np.unique(frames)
    n = unique_frames.size
    ncols = min(n, 6)
    nrows = (n + ncols - 1) // ncols
    h, w = int(rows.max()) + 1, int(cols.max()) + 1
    fig, axes = new_figure(1.6 * ncols + 0.8, 1.6 * nrows * max(h / max(w, 1), 0.5) + 0.6, nrows, ncols)
    finite = score[np.isfinite(score)]
    has_scores = finite.size > 0
    if not has_scores:  # colour by token index instead, which still shows each frame's raster order
        score = np.arange(trace.num_tokens, dtype=np.float64)
        finite = score[visual]
    vmin, vmax = float(finite.min()), float(finite.max())
    im = None
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        f = unique_frames[i]
        sel = visual[frames == f]
        grid = np.full((h, w), np.nan)
        grid[trace.patch[sel, 0], trace.patch[sel, 1]] = score[sel]
        im = ax.imshow(grid, cmap="Blues" if has_scores else "Greys", vmin=vmin, vmax=vmax,
                       interpolation="nearest", origin="upper")
        pr = sel[protected[sel]]
        if pr.size:
            ax.scatter(trace.patch[pr, 1], trace.patch[pr, 0], marker="s", s=30, facecolors="none",
                       edgecolors="#d1495b", linewidths=1.2)
        ax.set_title(f"frame {int(f)}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02,
                 label="semantic score" if has_scores else "token index")
    if has_scores:
        fig.suptitle(f"Protected: top {protect_fraction:g} of {visual.size} visual tokens "
                     f"({int(protected.sum())}, red squares)")
    else:
        fig.suptitle(f"{visual.size} visual tokens; {note}")
    caption = ("Each panel is one frame, each cell one patch (row, column). Colour: STP semantic score "
               "mean_j <e_i, e_j> over the query-text tokens j; red squares: the protected tokens (2-bit values).")
    if note:
        caption = "Each panel is one frame, each cell one visual patch. " + note
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=90, format="png")  # colorbar over several axes: no tight_layout
    import matplotlib.pyplot as plt
    plt.close(fig)
    return Plot(title, str(out_path), caption, note)


def make_trace_plots(trace_path, out_dir, layers=None, heads=None, fraction: float = 0.5,
                     protect_fraction: float = 0.2):
    """Every trace plot for the given layers (default: first and last) and heads (default: 0)."""
    os.makedirs(out_dir, exist_ok=True)
    plots = []
    with Trace(trace_path) as tr:
        available = tr.layers
        if not available:
            raise ValueError(f"{trace_path}: no /layers group")
        if layers is None:
            layers = sorted({available[0], available[-1]})
        heads = [0] if heads is None else heads
        for layer in layers:
            if layer not in available:
                raise ValueError(f"{trace_path}: no layer {layer} (layers {available[0]}..{available[-1]})")
            for head in heads:
                if not 0 <= head < tr.layer(layer, "key").shape[0]:
                    raise ValueError(f"{trace_path}: no KV head {head} in layer {layer}")
                plots.append(plot_magnitudes(tr, layer, head,
                                             os.path.join(out_dir, f"magnitude_l{layer:03d}_h{head}.png")))
            plots.append(plot_channel_profiles(tr, layer, os.path.join(out_dir, f"channels_l{layer:03d}.png"),
                                               fraction))
            for head in heads:
                plots.append(plot_fft_channel(tr, layer, head,
                                              os.path.join(out_dir, f"fft_channel_l{layer:03d}_h{head}.png"),
                                              fraction))
        plots.append(plot_visual_layout(tr, os.path.join(out_dir, "visual_layout.png"), protect_fraction))
    return plots
