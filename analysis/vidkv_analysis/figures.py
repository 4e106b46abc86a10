"""Matplotlib set-up shared by every plot: headless Agg backend, small PNGs (dpi 90) for committed reports."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed
import matplotlib.pyplot as plt  # noqa: E402

DPI = 90  # 80-100 keeps a committed example report small while labels stay legible

plt.rcParams.update({
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.dpi": DPI,
})


def new_figure(width_in: float, height_in: float, nrows: int = 1, ncols: int = 1, **kw):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width_in, height_in), squeeze=False, **kw)
    return fig, axes


def save(fig, path) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    # bbox_inches="tight": the saved image grows to hold everything drawn, so a legend placed outside the axes
    # (right of the plot, as in the bits-vs-error and layer plots) is never cut off.
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    return str(path)


def short_label(text, limit: int = 28) -> str:
    """Shortens in the middle, so that both a run name's head and its distinguishing tail stay visible."""
    text = str(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head):]


def compact_run_label(text) -> str:
    """A run name for legends and titles. Sweep-generated names list dotted parameter paths and values
    ('codec.value.reconstruction=scaled,codec.value.gamma=0.7'): each path is cut to its last part
    ('reconstruction=scaled, gamma=0.7'), so the values that tell runs apart stay visible. Other names unchanged."""
    text = str(text)
    parts = text.split(",")
    if len(parts) == 0 or not all("=" in p for p in parts):
        return text
    return ", ".join(p.split("=", 1)[0].strip().split(".")[-1] + "=" + p.split("=", 1)[1].strip() for p in parts)


def safe_name(text) -> str:
    """A file-name-safe version of a run or column name."""
    out = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in str(text))
    return out.strip("_.") or "x"


def two_line_label(text, width: int = 30) -> str:
    """A run name on at most two lines of `width` characters, split at a comma or space where possible
    ('value.reconstruction=scaled,value.gamma=0.7' keeps both parts visible)."""
    text = str(text)
    if len(text) <= width:
        return text
    cut = max(text.rfind(",", 0, width + 1), text.rfind(" ", 0, width + 1))
    if cut <= 0:
        cut = width
    first, rest = text[:cut + (1 if text[cut] == "," else 0)], text[cut + 1:] if text[cut] in ", " else text[cut:]
    return first.rstrip() + "\n" + short_label(rest.strip(), width)
