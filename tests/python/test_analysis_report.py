"""report: markdown numbers equal results.csv, self-contained HTML, paper-style ordering, CLI, and a headless
Chromium screenshot of the HTML."""

import csv
import math
import os
import re
import shutil
import subprocess

import pytest
from analysis_fixtures import (NAMED_RUNS, QUIET_MATPLOTLIB, SWEEP_RUNS, assert_valid_png,  # noqa: F401
                               named_results, sweep_results, tiny_trace, write_results)

from vidkv_analysis.cli import main
from vidkv_analysis.document import NOT_AVAILABLE, format_number
from vidkv_analysis.report import build_report, paper_section

pytestmark = QUIET_MATPLOTLIB

# format_number keeps 4 significant digits: a printed value is within half a unit of the 4th digit.
FOUR_DIGIT_RTOL = 5e-4


def parse_markdown_tables(md):
    """Every pipe table of a markdown text as a list of dicts (header -> cell text); '\\|' is an escaped pipe."""
    tables, current, header = [], None, None
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if header is None:
                header, current = cells, []
            elif all(set(c) <= {"-", ":"} for c in cells):
                continue
            else:
                current.append(dict(zip(header, cells)))
        elif header is not None:
            tables.append(current)
            header, current = None, None
    if header is not None:
        tables.append(current)
    return tables


def read_csv_aggregates(path):
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["layer"] == "-1" and r["kv_head"] == "-1"]


def assert_cell_equals(cell, csv_text):
    if csv_text.strip() == "":
        assert cell == NOT_AVAILABLE
        return
    expected = float(csv_text)
    assert cell == format_number(expected)
    assert math.isclose(float(cell), expected, rel_tol=FOUR_DIGIT_RTOL), (cell, csv_text)


def check_report_table(md, results_dir, multi_trace=False):
    csv_rows = read_csv_aggregates(os.path.join(results_dir, "results.csv"))
    tables = [t for t in parse_markdown_tables(md) if t and "effective_bits" in t[0]]
    assert tables, "no aggregate table in the report"
    table = tables[0]
    assert len(table) == len(csv_rows)
    metric_columns = [c for c in table[0] if c not in ("run", "trace")]
    assert {"nominal_bits", "effective_bits", "key_rel_error", "value_rel_error", "attn_kl",
            "attn_out_rel_error"} <= set(metric_columns)
    assert "attn_topk_overlap" not in metric_columns  # absent from the csv, so absent from the table
    for md_row, csv_row in zip(table, csv_rows):
        assert md_row["run"] == csv_row["run"]
        if multi_trace:
            assert md_row["trace"] == csv_row["trace"]
        for c in metric_columns:
            assert_cell_equals(md_row[c], csv_row[c])
    return table


def test_report_numbers_equal_results_csv(sweep_results, tmp_path):
    md_path, html_path = build_report(sweep_results, str(tmp_path / "out"))
    md = open(md_path, encoding="utf-8").read()
    assert md.startswith("# VidKV report: fig7-gamma")
    assert "0123456789ab" in md  # provenance
    table = check_report_table(md, sweep_results)
    assert [r["run"] for r in table] == [r[0] for r in SWEEP_RUNS]
    # every image the markdown links exists and is a valid PNG
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 5
    for link in links:
        assert_valid_png(os.path.join(os.path.dirname(md_path), link))


def test_report_with_two_traces_and_pipes_in_run_names(named_results, tmp_path):
    md_path, _ = build_report(named_results, str(tmp_path / "out"))
    table = check_report_table(open(md_path).read(), named_results, multi_trace=True)
    assert table[-1]["run"] == "VidKV 1.25/1.58 | bars"


def test_html_is_self_contained(sweep_results, tiny_trace, tmp_path):
    _, html_path = build_report(sweep_results, str(tmp_path / "out"), trace=tiny_trace)
    html = open(html_path, encoding="utf-8").read()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html.lower() and "<script" not in html.lower()
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == 5 + 6 + 1  # result plots, 3 trace plots x first/last layer, visual layout
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "<style>" in html
    assert "Trace: tiny.h5" in html


def test_paper_mode_orders_experiments(tmp_path):
    parent = tmp_path / "results"
    names = ["fig7-gamma", "table5-1bit", "quickstart", "fig6b-protection", "table2-main", "fig6a-key-bits",
             "table4-fft-stp", "table1-channel-selection"]
    for i, n in enumerate(names):
        write_results(str(parent / n), n, SWEEP_RUNS[:2] if i % 2 else NAMED_RUNS[:2], seed=i)
    md_path, html_path = build_report(str(parent))
    assert md_path == str(parent / "report.md")  # default output: the directory given
    md = open(md_path).read()
    assert md.startswith("# VidKV paper experiments")
    sections = re.findall(r"^## (.+)$", md, re.M)
    assert sections == ["Table 1: table1-channel-selection", "Table 2: table2-main", "Table 4: table4-fft-stp",
                        "Table 5: table5-1bit", "Fig. 6a: fig6a-key-bits", "Fig. 6b: fig6b-protection",
                        "Fig. 7: fig7-gamma", "quickstart"]
    assert md.count("Paper: ") == 7
    tables = [t for t in parse_markdown_tables(md) if t and "effective_bits" in t[0]]
    assert len(tables) == len(names)
    html = open(html_path).read()
    assert html.index("Table 1: table1") < html.index("Table 5: table5") < html.index("Fig. 7: fig7")


def test_paper_section_names():
    assert paper_section("table1-channel-selection")[1] == "Table 1"
    assert paper_section("table5-1bit")[1] == "Table 5"
    assert paper_section("fig6a-key-bits")[1] == "Fig. 6a"
    assert paper_section("fig6b")[1] == "Fig. 6b"
    assert paper_section("fig7-gamma-2")[1] == "Fig. 7"
    assert paper_section("table3-vatex") is None and paper_section("table10") is None
    assert paper_section("quickstart") is None


def test_format_number():
    assert format_number(16.0) == "16"
    assert format_number(1.58) == "1.58"
    assert format_number(0.123456) == "0.1235"
    assert format_number(float("nan")) == NOT_AVAILABLE


def test_cli_report(sweep_results, tiny_trace, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", sweep_results, "--trace", tiny_trace, "--out", str(out), "--layers", "1"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "report.md"), str(out / "report.html")]
    assert main(["report", str(tmp_path / "missing")]) == 1


def test_cli_report_with_a_truncated_trace_names_it_and_writes_nothing(sweep_results, tiny_trace, tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    with open(tiny_trace, "rb") as f:
        bad.write_bytes(f.read(10000))
    out = tmp_path / "rep"
    assert main(["report", sweep_results, "--trace", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vidkv_analysis report: error: ") and str(bad) in err
    assert not (out / "figures").exists() and not (out / "report.md").exists()


def test_module_entry_point(sweep_results, tmp_path):
    """python -m vidkv_analysis report DIR with PYTHONPATH=<repo>/analysis: the module `vidkv report` runs (in its
    embedded Python; tests/python/test_embedded_python.py runs the command itself)."""
    import sys
    from analysis_fixtures import REPO
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "analysis"))
    out = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "vidkv_analysis", "report", sweep_results, "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").is_file()


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_chromium_renders_report(sweep_results, tiny_trace, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium fonts-liberation): "
                    "HTML screenshot check not run")
    _, html_path = build_report(sweep_results, str(tmp_path / "out"), trace=tiny_trace)
    shot = tmp_path / "screenshot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
           "--window-size=1200,1600", f"--user-data-dir={tmp_path / 'profile'}", "file://" + html_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    assert_valid_png(str(shot))
    assert os.path.getsize(shot) > 20_000  # a rendered page with text, a table and plots, not a blank page
    keep = os.environ.get("VIDKV_SCREENSHOT_OUT")  # optional: keep the screenshot to look at it
    if keep:
        shutil.copy(shot, keep)


def test_paper_mode_keeps_two_directories_of_one_experiment(tmp_path):
    parent = tmp_path / "results"
    write_results(str(parent / "table2-main"), "table2-main", NAMED_RUNS[:2], seed=1)
    write_results(str(parent / "table2-main-2"), "table2-main", NAMED_RUNS, seed=2)
    md_path, _ = build_report(str(parent), str(tmp_path / "out"))
    md = open(md_path).read()
    assert re.findall(r"^## (.+)$", md, re.M) == ["Table 2: table2-main (table2-main)",
                                                  "Table 2: table2-main (table2-main-2)"]
    for sub in ("table2-main", "table2-main-2"):  # figures of each directory kept apart
        assert_valid_png(str(tmp_path / "out" / "figures" / sub / "bits_vs_error.png"))
    tables = [t for t in parse_markdown_tables(md) if t and "effective_bits" in t[0]]
    assert [len(t) for t in tables] == [2, 3]
