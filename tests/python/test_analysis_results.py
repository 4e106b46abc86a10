"""Reading results directories and the result plots."""

import math
import os

import pytest
from analysis_fixtures import (NAMED_RUNS, QUIET_MATPLOTLIB, SWEEP_RUNS, assert_valid_png,  # noqa: F401
                               named_results, sweep_results, write_results)

from vidkv_analysis.result_plots import (make_result_plots, pareto_front, plot_sweep, swept_params)
from vidkv_analysis.results import load_experiment

pytestmark = QUIET_MATPLOTLIB


def test_load_reads_names_params_and_aggregates(sweep_results):
    exp = load_experiment(sweep_results)
    assert exp.name == "fig7-gamma"
    assert exp.description == "tiny test experiment fig7-gamma"
    assert exp.provenance["git_revision"] == "0123456789ab"
    t = exp.table
    assert t.runs() == [r[0] for r in SWEEP_RUNS]
    assert "extra_col" in t.columns and "attn_topk_overlap" not in t.columns
    assert t.param_columns == ["param.codec.value.gamma"]
    assert len(t.aggregate_rows()) == len(SWEEP_RUNS)
    assert t.run_param(SWEEP_RUNS[2][0], "param.codec.value.gamma") == 0.7
    # per-head seconds are empty -> NaN; aggregates hold a number
    assert math.isnan(t.select(run=SWEEP_RUNS[0][0], layer=0, head=0)[0]["seconds"])
    assert not math.isnan(t.run_aggregate(SWEEP_RUNS[0][0], "seconds"))
    layers, values = t.per_layer(SWEEP_RUNS[0][0], "key_rel_error")
    assert layers == [0, 1, 2] and len(values) == 3
    layers, heads, grid = t.layer_head_grid(SWEEP_RUNS[0][0], "key_rel_error")
    assert layers == [0, 1, 2] and heads == [0, 1] and len(grid) == 3 and len(grid[0]) == 2


def test_jsonl_is_read_when_csv_is_absent(tmp_path):
    d = str(tmp_path / "j")
    write_results(d, "j", SWEEP_RUNS[:2])
    csv_exp = load_experiment(d)
    os.remove(os.path.join(d, "results.csv"))
    json_exp = load_experiment(d)
    assert json_exp.table.runs() == csv_exp.table.runs()
    for a, b in zip(csv_exp.table.aggregate_rows(), json_exp.table.aggregate_rows()):
        assert a["key_rel_error"] == pytest.approx(b["key_rel_error"], rel=1e-12)


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.csv"):
        load_experiment(str(tmp_path))


def test_pareto_front_worked_example():
    pts = [(2, 1.0), (3, 0.5), (3, 0.8), (1.5, 2.0), (4, 0.6)]
    # (3, 0.8) is beaten by (3, 0.5); (4, 0.6) by (3, 0.5) too
    assert pareto_front(pts) == [3, 0, 1]


def test_swept_params_skip_mapping_values(sweep_results, named_results):
    assert swept_params(load_experiment(sweep_results).table) == ["param.codec.value.gamma"]
    assert swept_params(load_experiment(named_results).table) == []  # '{preset: ...}' values are not an axis


def test_every_result_plot_is_a_valid_png(sweep_results, tmp_path):
    plots = make_result_plots(load_experiment(sweep_results).table, str(tmp_path / "p"))
    names = [os.path.basename(p.path) for p in plots]
    assert names == ["bits_vs_error.png", "layer_errors.png", "sweep_param.codec.value.gamma.png",
                     "heatmap_key_rel_error.png", "heatmap_value_rel_error.png"]
    for p in plots:
        assert_valid_png(p.path)


def test_two_parameter_sweep_draws_one_line_per_other_value(tmp_path):
    runs = [(f"r={r},g={g}", {"param.codec.value.reconstruction": r, "param.codec.value.gamma": g}, 1.5, 1.58)
            for r in ("magnitude_free", "scaled") for g in (0.5, 0.7, 1.0)]
    d = str(tmp_path / "fig7")
    write_results(d, "fig7-gamma", runs)
    table = load_experiment(d).table
    assert swept_params(table) == ["param.codec.value.gamma", "param.codec.value.reconstruction"]
    for col in swept_params(table):  # numeric and categorical x axes
        p = plot_sweep(table, col, str(tmp_path / f"{col}.png"))
        assert_valid_png(p.path)


def test_named_multi_trace_results_plot(named_results, tmp_path):
    plots = make_result_plots(load_experiment(named_results).table, str(tmp_path / "p"))
    assert len(plots) == 4  # no sweep axis
    for p in plots:
        assert_valid_png(p.path)


def test_results_without_per_head_rows_still_plot(tmp_path):
    d = str(tmp_path / "agg")
    cols, rows = write_results(d, "agg", NAMED_RUNS)
    with open(os.path.join(d, "results.csv")) as f:
        lines = f.read().splitlines()
    # keep the header and the aggregates only (layer = -1, head = -1)
    kept = [lines[0]] + [ln for ln in lines[1:] if ",-1,-1," in ln]
    with open(os.path.join(d, "results.csv"), "w") as f:
        f.write("\n".join(kept) + "\n")
    plots = make_result_plots(load_experiment(d).table, str(tmp_path / "p"))
    assert_valid_png(plots[0].path)  # bits vs error from the aggregates
    assert all(p.path is None and p.note for p in plots[1:])  # nothing per layer or head: notes, no crash


def test_results_with_the_old_head_column_read_as_kv_head(tmp_path):
    """Issue 14 item 4: results written before the rename (column `head`) load with the column named kv_head,
    the same rows and aggregates as the new files."""
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    write_results(old, "o", SWEEP_RUNS[:2], head_column="head")
    write_results(new, "o", SWEEP_RUNS[:2])
    a, b = load_experiment(old).table, load_experiment(new).table
    assert "kv_head" in a.columns and "head" not in a.columns
    assert a.columns == b.columns
    assert [r["kv_head"] for r in a.rows] == [r["kv_head"] for r in b.rows]
    assert len(a.aggregate_rows()) == 2


def test_kv_head_selects_rows_in_pandas(tmp_path):
    """d[d.head == -1] compared a bound method with -1 and selected nothing; d[d.kv_head == -1] is the column."""
    pandas = pytest.importorskip("pandas", reason="pandas is not in requirements.txt")
    d = str(tmp_path / "p")
    rows = write_results(d, "p", SWEEP_RUNS[:2])[1]
    frame = pandas.read_csv(os.path.join(d, "results.csv"))
    assert len(frame[frame.kv_head == -1]) == len([r for r in rows if r["kv_head"] == -1]) > 0


def test_legends_of_sweep_runs_keep_the_values_that_tell_them_apart(tmp_path, monkeypatch):
    """Issue 14 item 7: Fig. 7's runs are named by two swept paths; the legend used to cut the middle, so
    magnitude_free and scaled read alike. Labels keep each path's last part and every value, uncut."""
    from vidkv_analysis import result_plots
    from vidkv_analysis.figures import compact_run_label, two_line_label

    assert compact_run_label("value.reconstruction=magnitude_free,value.gamma=0.3") == \
        "reconstruction=magnitude_free, gamma=0.3"
    assert compact_run_label("KIVI 2/2 (K-C V-T)") == "KIVI 2/2 (K-C V-T)"
    runs = [(f"value.reconstruction={r},value.gamma={g}", {"param.codec.value.reconstruction": r,
                                                           "param.codec.value.gamma": g}, 1.5, 1.58)
            for r in ("magnitude_free", "scaled") for g in (0.3, 0.5, 0.7)]
    d = str(tmp_path / "g")
    write_results(d, "fig7-gamma", runs)
    legends = []
    real_save = result_plots.save

    def keep_legend(fig, path):
        for ax in fig.axes:
            if ax.get_legend():
                legends.append([t.get_text() for t in ax.get_legend().get_texts()])
        return real_save(fig, path)

    monkeypatch.setattr(result_plots, "save", keep_legend)
    result_plots.plot_bits_vs_error(load_experiment(d).table, str(tmp_path / "bits.png"))
    labels = [t for t in legends[0] if "reconstruction" in t]
    assert len(set(labels)) == 6 and not any("\u2026" in t for t in labels)
    assert sorted(labels) == sorted(two_line_label(compact_run_label(r[0]), 34) for r in runs)
