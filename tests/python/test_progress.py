"""vidkv.progress: plain lines when stderr is not a terminal, counting every generated token."""
import io

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")
pytest.importorskip("vidkv", reason="the _vidkv extension is built by scripts/setup.sh")

from vidkv.progress import RunProgress, TokenProgress  # noqa: E402


def test_plain_lines_count_runs_and_generated_tokens():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=16)).eval()
    out = io.StringIO()
    runs = RunProgress(2, "live", stream=out)
    for name in ("a", "b"):
        runs.start(name)
        with torch.no_grad():
            model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=7, min_new_tokens=7, do_sample=False,
                           pad_token_id=0, streamer=TokenProgress(f"{name} greedy", 7, stream=out))
        runs.write(f"[live] {name}: done")
        runs.done()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[live] run 1/2: a" and lines[3] == "[live] run 2/2: b"
    assert lines[1].startswith("  a greedy: 7 tokens in ") and lines[2] == "[live] a: done"
    assert "\r" not in out.getvalue()
