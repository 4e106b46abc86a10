"""The commands implemented in Python (vidkv live, record, report, bench) declare their options in C++ (CLI11, for
the generated --help and for checking the command line) and forward the arguments to their module's argparse
parser: both must list the same options, so neither rejects what the other accepts (issue 14 item 5)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VIDKV = ROOT / "build" / "bin" / "vidkv"

pytestmark = pytest.mark.skipif(not VIDKV.exists(), reason="build/bin/vidkv is not built")

# vidkv command -> the module's `python -m` arguments
MODULES = {
    "live": ["vidkv.live"],
    "validate-metrics": ["vidkv.validate_metrics"],
    "record": ["vidkv.record"],
    "bench": ["vidkv.bench"],
    "report": ["vidkv_analysis", "report"],
}


def options(help_text):
    """The long options of the option column of a help text (lines starting with '-', up to the description)."""
    found = set()
    for line in help_text.splitlines():
        if line.lstrip().startswith("-"):
            spec = re.split(r"\s{2,}", line.strip())[0]
            found |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", spec))
    return found - {"--help"}


@pytest.mark.parametrize("command", sorted(MODULES))
def test_cli_and_module_accept_the_same_options(command):
    if command in ("live", "record", "bench", "validate-metrics"):
        pytest.importorskip("torch", reason="the module imports torch: run scripts/setup.sh --models")
    cli = subprocess.run([str(VIDKV), command, "--help"], capture_output=True, text=True, check=True).stdout
    module = subprocess.run([sys.executable, "-m", *MODULES[command], "--help"], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    assert options(cli) == options(module), (cli, module)
