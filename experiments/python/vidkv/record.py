"""`vidkv record`: run a model on a prompt (and a video) and write a schema-v1 KV-cache trace.

    python -m vidkv.record --model ID_OR_PATH [--gguf FILE|smollm2] [--video FILE --frames N] --prompt TEXT
                           [--question TEXT] [--document FILE --max-tokens N] [--max-new-tokens N] -o TRACE.h5

Steps: the prompt is one user message in the model's chat template (video first, then the text; with --document,
the whole paragraphs of FILE that fit --max-tokens come before the prompt text); greedy generation
(deterministic); then prompt + answer re-run as one forward pass (eager attention) that records, for every
decoder layer, the post-RoPE K/V of the KV cache, the post-RoPE query states of the question tokens
(modality 2) and of the first --query-generated generated tokens, and the decoder's input embeddings. Token
modality / frame / patch come from the processor's own layout (vidkv.token_layout). The trace is written as
TRACE.h5.partial and renamed at the end; nothing is left behind on an error. A JSON summary goes to stdout.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from vidkv.models import KIND_TEXT, ModelError
from vidkv.token_layout import MOD_GENERATED, MOD_QUERY, PromptError
from vidkv.video import VideoError

__all__ = ["main", "record", "RecordError"]

PRODUCER = "vidkv record (experiments/python/vidkv/record.py)"


class RecordError(RuntimeError):
    pass


def read_paragraphs(path: Path) -> list[str]:
    if not path.is_file():
        raise RecordError(f"--document {path}: no such file")
    paras = [" ".join(p.split()) for p in path.read_text(encoding="utf-8").split("\n\n")]
    paras = [p for p in paras if p]
    if not paras:
        raise RecordError(f"--document {path}: no text")
    return paras


def compose_text(intro: str, document: str | None, prompt: str) -> str:
    return f"{intro}\n\n{document}\n\n{prompt}" if document else prompt


def greedy_kwargs(tok, max_new_tokens: int) -> dict:
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return dict(max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                pad_token_id=pad)


def record(args, loaded=None) -> dict:
    """Records one trace (see the module docstring); returns the summary. `args`: the parsed command line
    (parser()); `loaded`: an already loaded model (vidkv.models.LoadedModel) to use instead of args.model."""
    from vidkv.models import require_model_packages

    require_model_packages("vidkv record")
    import numpy as np
    import torch

    from vidkv.capture import capture_pass
    from vidkv.models import load_model
    from vidkv.progress import TokenProgress
    from vidkv.token_layout import build_inputs
    from vidkv.trace_file import write_trace
    from vidkv.video import read_frames

    t0 = time.time()
    frames = read_frames(args.video, args.frames) if args.video else None  # fail on a bad video before loading
    if loaded is None:
        loaded = load_model(args.model, gguf=args.gguf, device=args.device, dtype=args.dtype, threads=args.threads)
    if frames is not None and loaded.kind == KIND_TEXT:
        raise RecordError(f"--video given, but {args.model} is a text model ({loaded.family})")
    t_load = time.time() - t0
    tok = loaded.tokenizer

    document, n_paras = None, None
    if args.document:
        paras = read_paragraphs(Path(args.document))
        budget = args.max_tokens - args.max_new_tokens
        for k in range(1, len(paras) + 1):
            doc = "\n\n".join(paras[:k])
            trial = build_inputs(loaded, compose_text(args.intro, doc, args.prompt), args.question, frames,
                                 system=args.system)
            if trial.length > budget:
                break
            document, n_paras = doc, k
        if document is None:
            raise RecordError(f"even the first paragraph of {args.document} does not fit --max-tokens "
                              f"{args.max_tokens} with --max-new-tokens {args.max_new_tokens}")
    text = compose_text(args.intro, document, args.prompt)
    inputs = build_inputs(loaded, text, args.question, frames, system=args.system)
    device = loaded.model.device
    model_inputs = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in inputs.model_inputs.items()}

    t1 = time.time()
    with torch.no_grad():
        gen = loaded.model.generate(**model_inputs, **greedy_kwargs(tok, args.max_new_tokens),
                                    streamer=TokenProgress("record: greedy", args.max_new_tokens))
    gen_ids = gen[0, inputs.length:].tolist()
    if not gen_ids:
        raise RecordError("the model generated no tokens")
    answer = tok.decode(gen_ids, skip_special_tokens=True).strip()
    t_gen = time.time() - t1

    full = dict(model_inputs)
    full["input_ids"] = gen[:, :inputs.length + len(gen_ids)]
    full["attention_mask"] = torch.ones_like(full["input_ids"])
    if "mm_token_type_ids" in full:
        extra = torch.zeros((1, len(gen_ids)), dtype=full["mm_token_type_ids"].dtype, device=device)
        full["mm_token_type_ids"] = torch.cat([full["mm_token_type_ids"], extra], dim=1)
    t2 = time.time()
    cap = capture_pass(loaded, full)
    t_fwd = time.time() - t2
    T = inputs.length + len(gen_ids)
    pred = cap.logits[inputs.length - 1:T - 1].argmax(-1).tolist()

    modality = np.concatenate([inputs.modality, np.full(len(gen_ids), MOD_GENERATED, np.uint8)])
    frame = np.concatenate([inputs.frame, np.full(len(gen_ids), -1, np.int32)])
    patch = np.concatenate([inputs.patch, np.full((len(gen_ids), 2), -1, np.int16)])
    q_positions = [i for i in range(T) if modality[i] == MOD_QUERY]
    q_positions += list(range(inputs.length, inputs.length + min(args.query_generated, len(gen_ids))))
    qpos = torch.tensor(q_positions, dtype=torch.long)
    queries = [q[:, qpos] for q in cap.queries]

    cfg = loaded.text_config
    head_dim = int(cap.keys[0].shape[-1])
    attrs = {
        "producer": PRODUCER, "model_id": loaded.label, "model_family": loaded.family,
        "prompt": inputs.prompt_text, "prompt_sha256": hashlib.sha256(inputs.prompt_text.encode()).hexdigest(),
        "question": args.question or "", "generated_text": answer,
        "notes": ("Recorded by vidkv record: chat prompt" + (" with a video" if frames is not None else "") +
                  " + greedy answer, re-run as one forward pass (eager attention); K/V are the post-RoPE tensors of "
                  "that pass's KV cache, rounded to float16. Modality: 0 template/system/context text, 1 visual "
                  "(the processor's video tokens), 2 question span, 3 generated. Queries: post-RoPE query states of "
                  "the question tokens and the first generated tokens. " + (args.notes or "")),
    }
    for k, v in loaded.provenance.items():
        if k not in ("model_id",):
            attrs[k if k.startswith("model_file") else f"version_{k}"] = str(v)
    if args.video:
        attrs["video"] = str(Path(args.video).name)
        attrs["video_frames"] = np.int32(args.frames)
        attrs["video_grid"] = json.dumps(inputs.video_grid)
    if args.text_source:
        attrs["text_source"] = args.text_source
    model_attrs = {"num_layers": len(cap.keys), "num_kv_heads": int(cap.keys[0].shape[0]),
                   "num_query_heads": int(cap.queries[0].shape[0]), "head_dim": head_dim,
                   "hidden_size": int(cfg.hidden_size), "rope": "post"}
    ids = gen[0, :T].tolist()
    write_trace(args.output, attrs, model_attrs,
                {"modality": modality, "position": np.arange(T), "frame": frame, "patch": patch, "ids": ids},
                cap.embeddings, q_positions, cap.keys, cap.values, queries)
    counts = {str(m): int((modality == m).sum()) for m in (0, 1, 2, 3)}
    return {
        "output": str(args.output), "model": loaded.label, "T": T, "Q": len(q_positions),
        "prompt_tokens": inputs.length, "generated_tokens": len(gen_ids), "modality_counts": counts,
        "document_paragraphs": n_paras, "video_grid": inputs.video_grid, "answer": answer,
        "one_pass_greedy_tokens_match_generate": pred == gen_ids,
        "seconds": {"load": round(t_load, 2), "generate": round(t_gen, 2), "forward": round(t_fwd, 2),
                    "total": round(time.time() - t0, 2)},
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vidkv record", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="local folder of a saved transformers model, or the label of --gguf")
    ap.add_argument("--gguf", help="GGUF file to load (or 'smollm2': the file scripts/setup.sh --models fetches)")
    ap.add_argument("--video", help="video file (LLaVA-OneVision / Qwen2.5-VL models)")
    ap.add_argument("--frames", type=int, default=8, help="frames sampled uniformly from --video")
    ap.add_argument("--prompt", required=True, help="the user message")
    ap.add_argument("--question", help="the part of the prompt that is the question (modality 2, recorded queries)")
    ap.add_argument("--system", help="system message (default: the chat template's own)")
    ap.add_argument("--document", help="text file; its whole paragraphs that fit --max-tokens precede the prompt")
    ap.add_argument("--intro", default="Here is a passage.", help="sentence before --document's text")
    ap.add_argument("--text-source", help="provenance of --document, stored in the trace")
    ap.add_argument("--notes", help="extra text for the trace's notes attribute")
    ap.add_argument("--max-tokens", type=int, default=512, help="with --document: bound on prompt + generated tokens")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--query-generated", type=int, default=8, help="record queries of this many generated tokens")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summary", help="also write the summary JSON here")
    ap.add_argument("-o", "--output", required=True, help="trace file to write (HDF5, schema v1)")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        summary = record(args)
    except (RecordError, ModelError, PromptError, VideoError) as e:
        print(f"vidkv record: error: {e}", file=sys.stderr)
        return 1
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
