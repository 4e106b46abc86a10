"""`vidkv live`: end-to-end ablations on a real model through the VidKV cache hook (vidkv.hf.VidKVCache).

    python -m vidkv.live EXPERIMENT.yaml [--set dotted.path=value]... [--out DIR]

The experiment file is planned and validated by the same C++ code as `vidkv run` (`_vidkv.plan`): it names a
`model:` block (experiments/README.md) instead of `traces:`. For every run (codec x lifecycle of the sweep) and
every prompt, against the full-precision cache (transformers' DynamicCache, exact K/V):
  * teacher-forced scoring of the prompt's reference continuation: `generate` is forced to emit the reference
    tokens one decode step at a time (so the cache lifecycle sees real decode steps) and the raw logits are kept;
    perplexity = exp(mean NLL of the reference tokens), perplexity_reference the same with the exact cache,
    next_token_kl = mean over reference positions of KL(p_exact || p_run) in nats (the first position is
    predicted by the prefill, which uses exact K/V, so its KL is 0 by construction);
  * free greedy generation of max_new_tokens: greedy_agreement = fraction of positions whose token equals the
    exact cache's greedy token at that position (positions where only one of the two sequences goes on count as
    disagreements); generated_text is the run's answer (prompts separated by " | ");
  * key/value nominal and effective bits from the packed layouts of the teacher-forced cache (prompt + reference:
    the last reference token is fed once more after generate so the cache holds it, as a recorded trace does),
    summed over prompts as `vidkv run` sums layers (stored bytes over elements, core/bits_accounting.h),
    compression_ratio = bits of the model dtype (16 for fp16/bf16, 32 for fp32) / effective_bits; seconds = wall
    time of the run.
Results: the same files as `vidkv run` (config.yaml, provenance.json, results.csv, results.jsonl, summary.md), one
row per run with layer = head = -1, trace = the model's label and lifecycle = the lifecycle the run used ("paper
G=32 R=128"); the progress line of every run prints perplexity and next-token KL first, whatever `metrics:` lists; written into a temporary folder renamed at the
end (an error leaves no half-written results folder).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _vidkv

from vidkv.models import ModelError
from vidkv.token_layout import PromptError
from vidkv.video import VideoError

__all__ = ["main", "ModelBlock", "parse_model_block", "LiveError"]

MODEL_KEYS = {
    "id": "model id: a local transformers folder, or the label of `gguf` (required)",
    "gguf": "GGUF file to load, or 'smollm2' (the file scripts/setup.sh --models fetches)",
    "prompts": "list of {text, reference, question?}: user message, reference continuation, question span",
    "max_new_tokens": "tokens generated greedily per prompt (default 32)",
    "video": "video file given with every prompt (LLaVA-OneVision / Qwen2.5-VL)",
    "frames": "frames sampled uniformly from the video (default 8)",
    "device": "cpu or cuda[:N] (default cpu)",
    "dtype": "float32, float16 or bfloat16 (default float32)",
    "chat": "wrap prompts in the model's chat template (default true)",
    "system": "system message (default: the chat template's own)",
    "threads": "CPU threads of torch (default 2)",
}
PROMPT_KEYS = ("text", "reference", "question")


class LiveError(RuntimeError):
    pass


class ModelBlock:
    """The parsed `model:` block (scalars arrive as YAML text from the plan)."""

    def __init__(self, block: dict, source: str):
        where = f"{source}: model"
        if not isinstance(block, dict):
            raise LiveError(f"{where}: expected a block {{id: ..., prompts: [...]}}")
        unknown = sorted(set(block) - set(MODEL_KEYS))
        if unknown:
            raise LiveError(f"{where}: unknown key '{unknown[0]}'; valid keys: {', '.join(MODEL_KEYS)}")
        if not block.get("id"):
            raise LiveError(f"{where}.id: missing (a local model folder, or the label of `gguf`)")
        self.id = str(block["id"])
        self.gguf = block.get("gguf")
        self.video = block.get("video")
        if self.video:
            v = Path(os.path.expandvars(str(self.video))).expanduser()
            if not v.is_absolute() and not v.exists():
                v = Path(source).parent / v
            self.video = str(v)
        self.frames = self._int(block, "frames", 8, where)
        self.max_new_tokens = self._int(block, "max_new_tokens", 32, where)
        self.threads = self._int(block, "threads", 2, where)
        self.device = str(block.get("device", "cpu"))
        self.dtype = str(block.get("dtype", "float32"))
        self.chat = str(block.get("chat", "true")).lower() in ("true", "yes", "1", "on")
        self.system = block.get("system")
        prompts = block.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise LiveError(f"{where}.prompts: expected a non-empty list of {{text, reference, question?}}")
        self.prompts = []
        for i, p in enumerate(prompts):
            if not isinstance(p, dict):
                raise LiveError(f"{where}.prompts[{i}]: expected {{text, reference, question?}}")
            bad = sorted(set(p) - set(PROMPT_KEYS))
            if bad:
                raise LiveError(f"{where}.prompts[{i}]: unknown key '{bad[0]}'; valid keys: {', '.join(PROMPT_KEYS)}")
            for k in ("text", "reference"):
                if not p.get(k):
                    raise LiveError(f"{where}.prompts[{i}].{k}: missing")
            self.prompts.append({"text": str(p["text"]), "reference": str(p["reference"]),
                                 "question": str(p["question"]) if p.get("question") else None})

    @staticmethod
    def _int(block, key, default, where):
        try:
            v = int(block.get(key, default))
        except (TypeError, ValueError):
            raise LiveError(f"{where}.{key}: expected an integer, got {block.get(key)!r}") from None
        if v < 1:
            raise LiveError(f"{where}.{key}: must be >= 1, got {v}")
        return v


def parse_model_block(plan: dict) -> ModelBlock:
    return ModelBlock(plan["model"], plan["source_file"])


def _force_tokens(tokens):
    """A logits processor that makes generate emit `tokens` in order (teacher forcing through decode steps)."""
    import torch
    from transformers import LogitsProcessor

    class ForceTokens(LogitsProcessor):
        def __init__(self):
            self.step = 0

        def __call__(self, input_ids, scores):
            forced = torch.full_like(scores, -math.inf)
            forced[:, tokens[self.step]] = 0.0
            self.step += 1
            return forced

    return ForceTokens()


class PromptCase:
    """One prompt's inputs, reference continuation ids and the exact-cache results."""

    def __init__(self, loaded, spec, frames, block: ModelBlock):
        from vidkv.token_layout import build_inputs

        self.spec = spec
        self.inputs = build_inputs(loaded, spec["text"], spec["question"], frames, chat=block.chat,
                                   system=block.system)
        tok = loaded.tokenizer
        self.reference_ids = tok(spec["reference"], add_special_tokens=False)["input_ids"]
        if not self.reference_ids:
            raise LiveError(f"reference {spec['reference']!r} has no tokens")
        dev = loaded.model.device
        self.model_inputs = {k: (v.to(dev) if hasattr(v, "to") else v) for k, v in self.inputs.model_inputs.items()}
        self.embeddings = None


def _forced_logits(loaded, case: PromptCase, cache, streamer=None):
    import torch

    from vidkv.record import greedy_kwargs

    n = len(case.reference_ids)
    kw = greedy_kwargs(loaded.tokenizer, n)
    kw.update(min_new_tokens=n, output_logits=True, return_dict_in_generate=True,
              logits_processor=[_force_tokens(case.reference_ids)], streamer=streamer)
    with torch.no_grad():
        out = loaded.model.generate(**case.model_inputs, past_key_values=cache, **kw)
    got = out.sequences[0, case.inputs.length:].tolist()
    if got != case.reference_ids:
        raise LiveError("teacher forcing failed: generate did not emit the reference tokens")
    return torch.stack([l[0] for l in out.logits]).double().cpu()  # [n, vocab]


def _append_last_reference(loaded, case: PromptCase, cache):
    """Feeds the last reference token through the model once more, so that `cache` holds the prompt and every
    reference token (generate appends all but the last, whose logits are never computed): the cache a trace of the
    same prompt and continuation records, so bits are counted over the same tokens as `vidkv run` counts them."""
    import torch

    dev = loaded.model.device
    ids = torch.tensor([case.reference_ids[-1:]], device=dev)
    with torch.no_grad():
        loaded.model(input_ids=ids, past_key_values=cache, use_cache=True)


def lifecycle_label(lifecycle: dict) -> str:
    """"paper G=32 R=128" ("kivi G=32 R=128 B=32" with a value_block other than 1): the lifecycle a run used (results
    column `lifecycle`, as `vidkv run` writes it)."""
    label = f"{lifecycle.get('type', 'paper')} G={lifecycle.get('group', 32)} R={lifecycle.get('residual', 128)}"
    block = int(lifecycle.get("value_block", 1))
    return label if block == 1 else f"{label} B={block}"


def _greedy(loaded, case: PromptCase, cache, max_new_tokens: int, streamer=None):
    import torch

    from vidkv.record import greedy_kwargs

    with torch.no_grad():
        out = loaded.model.generate(**case.model_inputs, past_key_values=cache, streamer=streamer,
                                    **greedy_kwargs(loaded.tokenizer, max_new_tokens))
    return out[0, case.inputs.length:].tolist()


def _agreement(a: list, b: list) -> tuple[int, int]:
    n = max(len(a), len(b))
    same = sum(1 for x, y in zip(a, b) if x == y)
    return same, n


def _git_revision() -> str:
    root = Path(__file__).resolve().parents[3]
    try:
        return subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _choose_dir(base: str) -> Path:
    if not os.path.exists(base):
        return Path(base)
    i = 2
    while os.path.exists(f"{base}-{i}"):
        i += 1
    return Path(f"{base}-{i}")


def write_results(out_dir: Path, plan: dict, rows: list, columns: list, provenance: dict) -> Path:
    """The results folder of `vidkv run`, written into OUT.partial and renamed to OUT."""
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        (tmp / "config.yaml").write_text("# resolved experiment (defaults <- preset <- file <- --set)\n" +
                                         plan["resolved_yaml"])
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        # The same C++ writer as `vidkv run` (experiments/src/result_table.h): one CSV / JSON / markdown escaping.
        summary_cols = ["run", "lifecycle"] + plan["metrics"] + ["generated_text"]
        _vidkv.write_result_files(str(tmp), rows, columns, rows, summary_cols)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def run_live(experiment: str, overrides: list[str], out: str | None, command_line: str = "", loaded=None) -> Path:
    """Runs every run of the experiment (see the module docstring) and returns the results folder. `loaded`: an
    already loaded model (vidkv.models.LoadedModel) to use instead of loading the `model:` block's."""
    from vidkv.models import require_model_packages

    # The experiment first (YAML errors name their line whatever is installed), then the model packages.
    plan = _vidkv.plan(experiment, list(overrides))
    if plan["model"] is None:
        raise LiveError(f"{experiment}: no `model:` block; `vidkv live` runs live models (use `vidkv run` for traces)")
    block = parse_model_block(plan)
    require_model_packages("vidkv live")
    import numpy as np
    import torch
    from transformers import DynamicCache

    from vidkv.capture import capture_pass
    from vidkv.hf import VidKVCache, codec_needs_question, layout_bits, semantic_protectors
    from vidkv.models import load_model
    from vidkv.progress import RunProgress, TokenProgress
    from vidkv.video import read_frames

    # Everything that can be checked without the model is checked before it is loaded.
    for run in plan["runs"]:
        if codec_needs_question(run["codec"]):
            for i, p in enumerate(block.prompts):
                if p["question"] is None:
                    raise LiveError(
                        f"{experiment}: run '{run['name']}': the token protector {semantic_protectors(run['codec'])[0]}"
                        f" scores tokens against the question, but model.prompts[{i}] has no question span "
                        "(add `question:`, the part of `text` that is the question)")
    frames = read_frames(block.video, block.frames) if block.video else None
    if loaded is None:
        loaded = load_model(block.id, gguf=block.gguf, device=block.device, dtype=block.dtype, threads=block.threads)
    cases = [PromptCase(loaded, p, frames, block) for p in block.prompts]
    needs_embeddings = any("semantic_embedding" in semantic_protectors(r["codec"]) for r in plan["runs"])
    progress = RunProgress(len(plan["runs"]) + 1, "live")
    progress.start("exact cache (reference)")
    for i, case in enumerate(cases):
        if needs_embeddings:
            case.embeddings = capture_pass(loaded, case.model_inputs).embeddings.numpy()
        case.exact_logits = _forced_logits(loaded, case, DynamicCache(config=loaded.model.config),
                                           TokenProgress(f"prompt {i}: forced", len(case.reference_ids)))
        case.exact_greedy = _greedy(loaded, case, DynamicCache(config=loaded.model.config), block.max_new_tokens,
                                    TokenProgress(f"prompt {i}: greedy", block.max_new_tokens))
    progress.done()

    rows = []
    tok = loaded.tokenizer
    for run in plan["runs"]:
        progress.start(run["name"])
        t0 = time.time()
        nll = nll_ref = kl = 0.0
        n_tok = same = total = 0
        key_layouts, value_layouts = [], []  # of every prompt's teacher-forced cache
        texts = []
        for i, case in enumerate(cases):
            def cache():
                return VidKVCache(run["codec"], run["lifecycle"], modality=case.inputs.modality,
                                  embeddings=case.embeddings, seed=int(plan["seed"]))
            c = cache()
            logits = _forced_logits(loaded, case, c, TokenProgress(f"prompt {i}: forced", len(case.reference_ids)))
            ref = torch.tensor(case.reference_ids)
            lp = torch.log_softmax(logits, -1)
            lp_ref = torch.log_softmax(case.exact_logits, -1)
            nll -= lp.gather(1, ref[:, None]).sum().item()
            nll_ref -= lp_ref.gather(1, ref[:, None]).sum().item()
            kl += (lp_ref.exp() * (lp_ref - lp)).sum(-1).clamp_min(0).sum().item()
            n_tok += len(case.reference_ids)
            _append_last_reference(loaded, case, c)
            c.bits()  # raises vidkv.Error naming the cache when it is empty
            keys, values = c.layouts()
            key_layouts += keys
            value_layouts += values
            model_dtype = c.layers[0].dtype
            gen = _greedy(loaded, case, cache(), block.max_new_tokens,
                          TokenProgress(f"prompt {i}: greedy", block.max_new_tokens))
            s, n = _agreement(gen, case.exact_greedy)
            same, total = same + s, total + n
            texts.append(tok.decode(gen, skip_special_tokens=True).strip())
        metrics = {
            "perplexity": math.exp(nll / n_tok), "perplexity_reference": math.exp(nll_ref / n_tok),
            "next_token_kl": kl / n_tok, "greedy_agreement": same / total if total else float("nan"),
        }
        bits = layout_bits(key_layouts, value_layouts, model_dtype)
        del bits["model_dtype_bits"]
        metrics.update(bits)
        metrics["seconds"] = time.time() - t0
        row = {"experiment": plan["name"], "run": run["name"], "trace": loaded.label, "layer": -1, "kv_head": -1,
               "lifecycle": lifecycle_label(run["lifecycle"])}
        for m in plan["metrics"]:
            row[m] = float(metrics[m])
        row["generated_text"] = " | ".join(texts)
        for path, value in run["params"]:
            row["param." + path] = value
        rows.append(row)
        shown = ["perplexity", "next_token_kl"] + [m for m in plan["metrics"] if m not in ("perplexity", "next_token_kl")]
        progress.write(f"[live] {run['name']} ({row['lifecycle']}): " + ", ".join(f"{m}={metrics[m]:.4g}" for m in shown) +
                       f"; {row['generated_text']!r}")
        progress.done()

    columns = list(_vidkv.KEY_COLUMNS) + ["lifecycle"] + plan["metrics"] + ["generated_text"]
    for r in rows:
        columns += [c for c in r if c not in columns]
    provenance = {
        "experiment": plan["name"], "source_file": plan["source_file"], "git_revision": _git_revision(),
        "mode": "live", "seed": int(plan["seed"]), "command_line": command_line, "overrides": list(overrides),
        "model": {"id": block.id, "label": loaded.label, "family": loaded.family, "device": block.device,
                  "dtype": block.dtype, **{k: str(v) for k, v in loaded.provenance.items()}},
        "prompts": block.prompts, "video": block.video, "frames": block.frames if block.video else None,
        "runs": [{"name": r["name"], "codec": r["codec"], "lifecycle": r["lifecycle"]} for r in plan["runs"]],
        "exact_greedy_text": [tok.decode(c.exact_greedy, skip_special_tokens=True).strip() for c in cases],
    }
    out_dir = Path(out) if out else _choose_dir(plan["output"])
    write_results(out_dir, plan, rows, columns, provenance)
    # The table and its key as vidkv run prints them (the generated texts stay in summary.md and results.csv).
    shown = ["run", "lifecycle"] + plan["metrics"]
    print("\n" + _vidkv.summary_markdown(rows, shown) + "\n" + _vidkv.summary_column_key(shown, live=True), end="")
    print(f"[live] results: {out_dir}", file=sys.stderr)
    return out_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vidkv live", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment")
    ap.add_argument("--set", action="append", default=[], metavar="K=V", help="override a dotted path")
    ap.add_argument("--out", help="results folder (default: the experiment's output, uniquified)")
    args = ap.parse_args(argv)
    try:
        run_live(args.experiment, args.set, args.out, " ".join(["vidkv", "live"] + (argv or sys.argv[1:])))
    except (LiveError, ModelError, PromptError, VideoError, _vidkv.Error) as e:
        print(f"vidkv live: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
