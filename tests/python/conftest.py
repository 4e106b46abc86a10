"""pytest setup: make the repository's Python packages importable without installation (the .pth that
scripts/setup.sh writes into .venv does the same for interactive use)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for sub in ("experiments/python", "build/python", "analysis"):
    path = os.path.join(ROOT, sub)
    if path not in sys.path:
        sys.path.insert(0, path)
