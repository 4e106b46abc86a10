"""The `vidkv` console script of a pip-installed VidKV: runs the installed binary vidkv/bin/vidkv with this
environment's python as its embedded Python (VIDKV_PYTHON) and the presets shipped in the wheel
(VIDKV_PRESETS_DIR), unless those variables are already set."""
import os
import sys


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(here, "bin", "vidkv")
    if not os.path.exists(binary):
        sys.exit("vidkv: the command is not installed with this package (" + binary + "); build it with CMake "
                 "(README: Build by hand) or reinstall with `pip install .`")
    os.environ.setdefault("VIDKV_PYTHON", sys.executable)
    presets = os.path.join(here, "presets")
    if os.path.isdir(presets):
        os.environ.setdefault("VIDKV_PRESETS_DIR", presets)
    os.execv(binary, [binary] + sys.argv[1:])


if __name__ == "__main__":
    main()
