"""Plots of one experiment's results: bits vs error, per-layer errors, parameter sweeps, layer x head heatmaps."""

from __future__ import annotations

import math
import os

import numpy as np

from .figures import compact_run_label, new_figure, safe_name, save, short_label, two_line_label  # first: selects the Agg backend
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.ticker import MaxNLocator, ScalarFormatter  # noqa: E402
from .results import PARAM_PREFIX, ResultsTable, is_number
from .trace_plots import Plot

# The error shown against bits, first present wins: the headline decode-step attention-output error pooled by depth
# (the trace metric that ranks settings like the live model, docs/metric-validation.md), then the attention output
# error, which sums up both K and V.
ERROR_PREFERENCE = ("decode_attn_out_depth_error", "attn_out_rel_error", "attn_kl", "key_rel_error", "value_rel_error")
SWEEP_METRICS = ("key_rel_error", "value_rel_error", "attn_kl", "attn_out_rel_error")


def _colors(n):
    import matplotlib.pyplot as plt
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def pick_error_metric(table: ResultsTable):
    for m in ERROR_PREFERENCE:
        if table.has(m):
            return m
    return None


def pareto_front(points):
    """Indices of the points (bits, error) not dominated by another (fewer or equal bits and lower or equal error,
    one strictly), sorted by bits."""
    idx = []
    for i, (b, e) in enumerate(points):
        dominated = any((b2 <= b and e2 <= e) and (b2 < b or e2 < e) for j, (b2, e2) in enumerate(points) if j != i)
        if not dominated:
            idx.append(i)
    return sorted(idx, key=lambda i: points[i][0])


def plot_bits_vs_error(table: ResultsTable, out_path, metric: str | None = None) -> Plot:
    """Per run: nominal bits (hollow) and effective bits (filled) against the error, joined by a segment;
    the Pareto front is drawn over effective bits."""
    metric = metric or pick_error_metric(table)
    title = "Bits vs error"
    if metric is None or not (table.has("effective_bits") or table.has("nominal_bits")):
        return Plot(title, None, note="No bits or error columns in the results.")
    runs = table.runs()
    colors = _colors(len(runs))
    fig, axes = new_figure(7.5, 4.2)
    ax = axes[0, 0]
    eff_points, eff_runs = [], []
    for run, color in zip(runs, colors):
        err = table.run_aggregate(run, metric)
        nom = table.run_aggregate(run, "nominal_bits")
        eff = table.run_aggregate(run, "effective_bits")
        if math.isnan(err):
            continue
        if not math.isnan(nom) and not math.isnan(eff):
            ax.plot([nom, eff], [err, err], color=color, lw=1, alpha=0.7)
        if not math.isnan(nom):
            ax.plot(nom, err, "o", mfc="none", mec=color, ms=7)
        if not math.isnan(eff):
            ax.plot(eff, err, "o", color=color, ms=7, label=two_line_label(compact_run_label(run), 34))
            eff_points.append((eff, err))
            eff_runs.append(run)
    if eff_points:
        front = pareto_front(eff_points)
        ax.step([eff_points[i][0] for i in front], [eff_points[i][1] for i in front], where="post",
                color="black", lw=0.8, ls="--")
        ax.plot([eff_points[i][0] for i in front], [eff_points[i][1] for i in front], "o", ms=11, mfc="none",
                mec="black", mew=0.8, ls="none", label="Pareto front (effective)")
    bits = [b for b, _ in eff_points] + [table.run_aggregate(r, "nominal_bits") for r in runs]
    bits = [b for b in bits if not math.isnan(b) and b > 0]
    if bits and max(bits) / min(bits) > 4:  # a 16-bit baseline beside 1.x-bit runs: log2 keeps both readable
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.plot([], [], "o", mfc="none", mec="grey", label="nominal bits (hollow)")
    ax.set_xlabel("bits per element (hollow: nominal, filled: effective)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs bits per element")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    caption = (f"Each run's per-trace aggregate {metric} against its nominal bits (hollow) and effective bits "
               "(filled, metadata and full-precision residual included); the dashed line and black rings mark the "
               "Pareto front over effective bits.")
    return Plot(title, save(fig, out_path), caption)


def plot_layer_errors(table: ResultsTable, out_path) -> Plot:
    """Key and value relative error against the layer, one line per run."""
    metrics = [m for m in ("key_rel_error", "value_rel_error") if table.has(m)]
    title = "Error per layer"
    if not metrics:
        return Plot(title, None, note="No key_rel_error or value_rel_error column.")
    runs = table.runs()
    colors = _colors(len(runs))
    fig, axes = new_figure(4.2 * len(metrics) + 2.2, 3.4, 1, len(metrics))
    drawn = False
    for ax, metric in zip(axes[0], metrics):
        drawn_values = []
        for run, color in zip(runs, colors):
            layers, values = table.per_layer(run, metric)
            if layers:
                ax.plot(layers, values, "-o", ms=2.5, lw=1, color=color, label=two_line_label(compact_run_label(run), 34))
                drawn_values += [v for v in values if not math.isnan(v)]
                drawn = True
        if drawn_values and min(drawn_values) > 0 and max(drawn_values) / min(drawn_values) > 20:
            ax.set_yscale("log")  # one outlying layer (often layer 0) would flatten every other on a linear axis
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per layer")
        ax.grid(alpha=0.3)
    if not drawn:
        import matplotlib.pyplot as plt
        plt.close(fig)
        return Plot(title, None, note="No per-layer rows.")
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    caption = ("The key and value relative errors of each layer, per run: the per-layer rows (kv_head -1: the error of "
               "the layer's KV heads taken together, not the mean of the heads' errors), averaged over traces; results "
               "without per-layer rows give the mean over KV heads instead.")
    return Plot(title, save(fig, out_path), caption)


def _param_values(table: ResultsTable, column):
    """{run: value} when every run has a plain (not mapping/list) value for the column, else None."""
    out = {}
    for run in table.runs():
        v = table.run_param(run, column)
        if v is None or (isinstance(v, str) and v[:1] in "{["):
            return None
        out[run] = v
    return out


def swept_params(table: ResultsTable):
    """`param.*` columns with more than one distinct plain value over the runs."""
    cols = []
    for c in table.param_columns:
        vals = _param_values(table, c)
        if vals is not None and len(set(map(str, vals.values()))) > 1:
            cols.append(c)
    return cols


def plot_sweep(table: ResultsTable, column: str, out_path, metrics=None) -> Plot:
    """y = metrics against x = the parameter; one line per combination of the other swept parameters."""
    metrics = [m for m in (metrics or SWEEP_METRICS) if table.has(m)]
    name = column[len(PARAM_PREFIX):]
    title = f"Sweep over {name}"
    if not metrics:
        return Plot(title, None, note="No metric to plot.")
    values = _param_values(table, column)
    others = [c for c in swept_params(table) if c != column]
    numeric = all(is_number(v) for v in values.values())
    if numeric:
        xs_all = sorted({float(v) for v in values.values()})
        position = {x: x for x in xs_all}
    else:
        xs_all = list(dict.fromkeys(str(v) for v in values.values()))
        position = {x: i for i, x in enumerate(xs_all)}
    series = {}
    for run, v in values.items():
        key = tuple((c[len(PARAM_PREFIX):], str(table.run_param(run, c))) for c in others)
        series.setdefault(key, []).append((float(v) if numeric else str(v), run))
    ncols = min(len(metrics), 2)
    nrows = (len(metrics) + ncols - 1) // ncols
    fig, axes = new_figure(4.0 * ncols + 1.8, 2.9 * nrows, nrows, ncols)
    colors = _colors(len(series))
    for i, ax in enumerate(axes.ravel()):
        if i >= len(metrics):
            ax.axis("off")
            continue
        metric = metrics[i]
        for (key, pts), color in zip(series.items(), colors):
            pts = sorted(pts, key=lambda p: position[p[0]])
            xs = [position[p[0]] for p in pts]
            ys = [table.run_aggregate(run, metric) for _, run in pts]
            label = compact_run_label(",".join(f"{k}={v}" for k, v in key)) or None
            ax.plot(xs, ys, "-o", ms=3.5, lw=1.2, color=color, label=two_line_label(label, 40) if label else None)
        if not numeric:
            ax.set_xticks(list(range(len(xs_all))))
            ax.set_xticklabels([short_label(x, 16) for x in xs_all], rotation=30, ha="right")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if i == 0 and series and any(k for k in series):
            ax.legend(frameon=False)
    caption = (f"Per-trace aggregates against {name}" +
               (f", one line per value of {', '.join(c[len(PARAM_PREFIX):] for c in others)}" if others else "") + ".")
    return Plot(title, save(fig, out_path), caption)


def plot_layer_head_heatmaps(table: ResultsTable, out_path, metric: str = "key_rel_error",
                             max_runs: int = 16) -> Plot:
    """One heatmap of `metric` by layer (y) x head (x) per run, on a shared colour scale."""
    title = f"{metric} by layer x head"
    runs = [r for r in table.runs() if table.layer_head_grid(r, metric)[2]][:max_runs]
    if not table.has(metric) or not runs:
        return Plot(title, None, note=f"No per-head {metric} rows.")
    grids = [table.layer_head_grid(r, metric) for r in runs]
    finite = np.array([v for g in grids for row in g[2] for v in row if not math.isnan(v)])
    vmin, vmax = float(finite.min()), float(finite.max())
    # One outlying layer (e.g. layer 0) would turn every other cell black on a linear scale: go logarithmic when
    # the values span more than a factor of 20.
    norm = LogNorm(vmin=vmin, vmax=vmax) if vmin > 0 and vmax / vmin > 20 else Normalize(vmin=vmin, vmax=vmax)
    ncols = min(len(runs), 4)
    nrows = (len(runs) + ncols - 1) // ncols
    fig, axes = new_figure(2.3 * ncols + 1.0, 2.7 * nrows + 0.3, nrows, ncols, layout="constrained")
    im = None
    for i, ax in enumerate(axes.ravel()):
        if i >= len(runs):
            ax.axis("off")
            continue
        layers, heads, grid = grids[i]
        im = ax.imshow(np.array(grid, dtype=float), aspect="auto", cmap="magma", norm=norm,
                       interpolation="nearest", origin="lower",
                       extent=(heads[0] - 0.5, heads[-1] + 0.5, layers[0] - 0.5, layers[-1] + 0.5))
        ax.set_title(two_line_label(compact_run_label(runs[i])), fontsize=6.5)
        ax.set_xticks(heads)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("KV head")
        if i % ncols == 0:
            ax.set_ylabel("layer")
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02,
                 label=metric + (" (log scale)" if isinstance(norm, LogNorm) else ""))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=90, format="png")  # colorbar over several axes: no tight_layout
    import matplotlib.pyplot as plt
    plt.close(fig)
    more = len(table.runs()) - len(runs)
    caption = f"{metric} of every layer and KV head, one panel per run (shared colour scale)." + \
        (f" {more} further runs not shown." if more > 0 else "")
    return Plot(title, str(out_path), caption)


def make_result_plots(table: ResultsTable, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    plots = [plot_bits_vs_error(table, os.path.join(out_dir, "bits_vs_error.png")),
             plot_layer_errors(table, os.path.join(out_dir, "layer_errors.png"))]
    for column in swept_params(table):
        plots.append(plot_sweep(table, column, os.path.join(out_dir, f"sweep_{safe_name(column)}.png")))
    for metric in ("key_rel_error", "value_rel_error"):
        if table.has(metric):
            plots.append(plot_layer_head_heatmaps(table, os.path.join(out_dir, f"heatmap_{metric}.png"), metric))
    return plots
