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


@pytest.mark.parametrize("command", ["live", "record"])
def test_commands_without_the_model_packages_name_them_and_the_fix(command, monkeypatch, capsys):
    """Plain `scripts/setup.sh` installs no torch: vidkv live / record then end with one error line naming the
    missing package, the import's error and `scripts/setup.sh --models`, not a traceback. The module's import check
    (importlib.import_module, which the import statement does not use) is made to fail for torch, so this runs with
    or without torch installed."""
    pytest.importorskip("_vidkv", reason="the _vidkv extension is built by scripts/setup.sh")
    import importlib

    from vidkv import live, models, record

    real = importlib.import_module

    def without_torch(name, *args, **kwargs):
        if name == "torch":
            raise ModuleNotFoundError("No module named 'torch'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(models.importlib, "import_module", without_torch)
    if command == "live":
        code = live.main([str(ROOT / "experiments" / "live" / "smollm2.yaml")])
    else:
        code = record.main(["--model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--prompt", "hi", "-o", "unused.h5"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"vidkv {command}: error: vidkv {command} needs the model packages")
    assert "torch is not importable" in err and "No module named 'torch'" in err
    assert "scripts/setup.sh --models" in err and "Traceback" not in err
