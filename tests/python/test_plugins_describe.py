"""`vidkv plugins describe NAME` prints each plugin's parameters as a table whose columns stay aligned: every row's
description starts where the header's "description" starts, however long a choice list or default is."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VIDKV = ROOT / "build" / "bin" / "vidkv"

pytestmark = pytest.mark.skipif(not VIDKV.exists(), reason="build/bin/vidkv is not built")


def builtin_plugins():
    """The names `vidkv plugins list` prints under its three plugin families (two-space indented rows)."""
    text = subprocess.run([str(VIDKV), "plugins", "list"], capture_output=True, text=True, check=True).stdout
    names, family = [], None
    for line in text.splitlines():
        if line.endswith(":"):
            family = line[:-1]
        elif family in ("quantizers", "channel_selectors", "token_protectors") and re.match(r"  \S", line):
            names.append(line.split()[0])
    return names


def test_describe_columns_line_up_for_every_builtin_plugin():
    names = builtin_plugins()
    assert "ternary" in names and "range" in names and "semantic_embedding" in names
    for name in names:
        text = subprocess.run([str(VIDKV), "plugins", "describe", name], capture_output=True, text=True,
                              check=True).stdout
        lines = text.splitlines()
        header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("parameter "))
        start = {col: lines[header].index(col) for col in ("type", "default", "range", "description")}
        rows = [line for line in lines[header + 1:] if line.strip()]
        for row in rows:
            for col, at in start.items():
                # each cell starts in its column: a space before it, a character at it
                assert row[at - 1] == " " and row[at] != " ", f"{name}: '{col}' is not at column {at} in {row!r}"


def test_describe_of_a_preset_says_it_is_one_and_where_its_blocks_are():
    res = subprocess.run([str(VIDKV), "plugins", "describe", "kivi-2"], capture_output=True, text=True)
    assert res.returncode != 0
    assert "'kivi-2' is a preset, not a plugin: its key and value blocks are in " in res.stderr
    assert "kivi-2.yaml" in res.stderr
    res = subprocess.run([str(VIDKV), "plugins", "describe", "unifrom"], capture_output=True, text=True)
    assert "unknown plugin 'unifrom' (did you mean 'uniform'?)" in res.stderr
