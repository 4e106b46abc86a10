"""pytest setup: make the repository's Python packages importable without installation (the .pth that
scripts/setup.sh writes into .venv does the same for interactive use)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for sub in ("experiments/python", "build/python", "analysis"):
    path = os.path.join(ROOT, sub)
    if path not in sys.path:
        sys.path.insert(0, path)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct (real weights, CPU, float32), loaded once per test session."""
    pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
    from vidkv.models import load_model
    return load_model("HuggingFaceTB/SmolLM2-135M-Instruct", gguf="smollm2", threads=2)
