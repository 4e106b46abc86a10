"""Where a whole-model decode step's host time goes, per cache, and whether a cache's per-layer calls slow the model's
own calls (issues 12 and 13).

On a GPU machine: PYTHONPATH=experiments/python:build-cuda/python python3 scripts/live_own_time.py [tokens] [rounds]
[--patterns]

`vidkv bench --live`'s model (bench_live._model: a random-weight Qwen2-7B-geometry decoder, 28 layers) prefills
`tokens` random tokens per run, then times 12 decode steps (after 3 untimed) per run, the runs interleaved over
`rounds` rounds. Every cache update (DynamicLayer.update, VidKVLayer.update) and attention call (transformers' "sdpa"
function, "vidkv_fused") is wrapped with a timer, as are `_vidkv.append_rows` and `_vidkv.DecodeAttention.run`
inside them; per step the table gives the host ms of model(...) ("host", no synchronise), the step's wall ms
(synchronised), the wrapped calls' ms, and "own" = host minus the updates and attention calls: the model's own
Python and torch calls. Runs: A DynamicCache; B VidKVCache kivi-2 fused; C vidkv-k1.5-v1.58 fused; with
--patterns also D DynamicCache with a shadow fused kivi-2 cache whose update and attention run beside each layer
(results unused), E DynamicCache plus an event record / stream wait pair on a side stream and back per layer (torch
calls: the pattern of a general kernel run beside), F DynamicCache plus a pinned 26 KB cudaMemcpyAsync with an event
record and event synchronize per layer (the pattern of a table upload through pinned staging). A cache whose calls
cost the model's own calls time shows a larger "own" than A. Figures: docs/performance.md section 8.
"""
import argparse
import statistics
import time
from collections import defaultdict

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import _vidkv
from vidkv import bench_live, fused_attention
from vidkv import hf as vhf
from vidkv.fused_attention import use_fused_attention
from vidkv.hf import VidKVCache

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("tokens", nargs="?", type=int, default=32768)
ap.add_argument("rounds", nargs="?", type=int, default=3)
ap.add_argument("--patterns", action="store_true", help="also the runs D, E, F (see above)")
cli = ap.parse_args()
T, ROUNDS, STEPS = cli.tokens, cli.rounds, 12
pc = time.perf_counter
acc = defaultdict(float)


def timed(name, fn):
    def w(*a, **k):
        t = pc()
        try:
            return fn(*a, **k)
        finally:
            acc[name] += pc() - t
    return w


orig_dyn_update = DynamicLayer.update
orig_vid_update = vhf.VidKVLayer.update
orig_append = _vidkv.append_rows
orig_run = _vidkv.DecodeAttention.run
vhf.VidKVLayer.update = timed("update", orig_vid_update)
_vidkv.append_rows = timed("append_rows", orig_append)
try:
    _vidkv.DecodeAttention.run = timed("run", orig_run)
except (AttributeError, TypeError) as e:  # a build whose class refuses new attributes: "run" stays 0
    print("could not wrap DecodeAttention.run:", e)
fused_timed = timed("attention", fused_attention.fused_attention_forward)

mode = {"shadow": None, "pattern": None}
state = {}
last_kv = {}


def dyn_update_capture(self, key_states, value_states, *a, **k):
    last_kv["kv"] = (key_states, value_states)
    return orig_dyn_update(self, key_states, value_states, *a, **k)


DynamicLayer.update = timed("update", dyn_update_capture)


def sdpa_wrapped(module, query, key, value, attention_mask, **kwargs):
    t = pc()
    out = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    acc["attention"] += pc() - t
    if query.shape[2] == 1 and mode["shadow"] is not None:
        shadow = mode["shadow"]
        k1, v1 = last_kv["kv"]
        t = pc()
        u, r_, ap = acc["update"], acc["run"], acc["append_rows"]
        kk, vv = shadow.update(k1, v1, module.layer_idx)
        fused_attention.fused_attention_forward(module, query, kk, vv, None, scaling=kwargs.get("scaling"))
        acc["shadow_run"] += acc["run"] - r_
        acc["update"], acc["run"], acc["append_rows"] = u, r_, ap  # counted in "shadow" only
        acc["shadow"] += pc() - t
    if query.shape[2] == 1 and mode["pattern"] is not None:
        t = pc()
        p = mode["pattern"]
        if "streams" in p:
            main = torch.cuda.current_stream()
            state["fork"].record(main)
            state["side"].wait_event(state["fork"])
            state["join"].record(state["side"])
            main.wait_event(state["join"])
        if "copy" in p:
            slot = state["slot"]
            state["slot"] ^= 1
            state["staged"][slot].synchronize()
            state["dev"].copy_(state["pinned"][slot], non_blocking=True)
            state["staged"][slot].record()
        acc["pattern"] += pc() - t
    return out


AttentionInterface.register("sdpa", sdpa_wrapped)
AttentionInterface.register(fused_attention.ATTENTION_NAME, fused_timed)
_orig_use = use_fused_attention


def use_fused(model):
    _orig_use(model)
    AttentionInterface.register(fused_attention.ATTENTION_NAME, fused_timed)


args = bench_live._parse(["--live", "--tokens", str(T), "--steps", "16"])
torch.backends.cuda.enable_cudnn_sdp(False)
model, cfg = bench_live._model(torch, args)
g = torch.Generator(device="cpu").manual_seed(0)
prompt = torch.randint(0, cfg.vocab_size, (1, T), generator=g).to("cuda")
state["side"] = torch.cuda.Stream()
state["fork"], state["join"] = torch.cuda.Event(), torch.cuda.Event()
state["pinned"] = [torch.empty(24 * 1100, dtype=torch.uint8).pin_memory() for _ in range(2)]
state["staged"] = [torch.cuda.Event(), torch.cuda.Event()]
state["staged"][0].record()
state["staged"][1].record()
state["dev"] = torch.empty(24 * 1100, dtype=torch.uint8, device="cuda")
state["slot"] = 0


def prefill(cache):
    with torch.inference_mode():
        nxt = bench_live._next_token(model, prompt, cache, logits_to_keep=1)
    torch.cuda.synchronize()
    return nxt


def run(name, fused_preset=None, shadow=None, pattern=None):
    if fused_preset:
        use_fused(model)
        cache = VidKVCache({"preset": fused_preset}, attention="fused")
    else:
        model.set_attn_implementation("sdpa")
        AttentionInterface.register("sdpa", sdpa_wrapped)
        cache = DynamicCache()
    sh = None
    if shadow:
        use_fused(model)
        sh = VidKVCache({"preset": shadow}, attention="fused")
        prefill(sh)
        model.set_attn_implementation("sdpa")
        AttentionInterface.register("sdpa", sdpa_wrapped)
    nxt = prefill(cache)
    mode["shadow"], mode["pattern"] = sh, pattern
    rows = []
    with torch.inference_mode():
        for i in range(STEPS + 3):
            acc.clear()
            t0 = pc()
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
            t1 = pc()
            nxt = out.logits[:, -1:].argmax(-1)
            del out
            torch.cuda.synchronize()
            t2 = pc()
            if i >= 3:
                ours = acc["update"] + acc["attention"] + acc["shadow"] + acc["pattern"]
                rows.append(dict(host=t1 - t0, wall=t2 - t0, own=(t1 - t0) - ours, **acc))
    mode["shadow"], mode["pattern"] = None, None
    if fused_preset:
        print(name, "layer 0 uploads", cache.layers[0].attention.uploads(), flush=True)
    del cache, sh
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return rows


runs = [("A DynamicCache", {}), ("B kivi-2 fused", {"fused_preset": "kivi-2"}),
        ("C vidkv fused", {"fused_preset": "vidkv-k1.5-v1.58"})]
if cli.patterns:
    runs += [
        ("D DynamicCache + shadow kivi-2 fused", {"shadow": "kivi-2"}),
        ("E DynamicCache + fork/join events", {"pattern": ("streams",)}),
        ("F DynamicCache + pinned copy + event sync", {"pattern": ("copy",)})]
res = defaultdict(list)
for r in range(ROUNDS):
    for name, kw in runs:
        res[name] += run(name, **kw)
        print(f"round {r} {name} done", flush=True)

keys = ["host", "wall", "own", "update", "append_rows", "attention", "run", "shadow", "shadow_run", "pattern"]
print(f"\n# {T} tokens, {ROUNDS} rounds x {STEPS} steps; ms per step (median); per layer = /28 in us")
print("| run | " + " | ".join(keys) + " |")
print("| --- |" + " ---: |" * len(keys))
for name, _ in runs:
    rows = res[name]
    cells = [statistics.median([x.get(k, 0.0) for x in rows]) * 1e3 for k in keys]
    print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
print("\nper layer us (median step / 28):")
for name, _ in runs:
    rows = res[name]
    print(name, {k: round(statistics.median([x.get(k, 0.0) for x in rows]) * 1e6 / 28, 1) for k in keys[3:]})
