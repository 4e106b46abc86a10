"""Where a whole-model decode step spends its host time, DynamicCache against VidKVCache (issues 12 and 13).

On a GPU machine: PYTHONPATH=experiments/python:build-cuda/python python3 scripts/live_step_profile.py [tokens]

`vidkv bench --live` times whole decode steps of a random-weight Qwen2-7B-geometry model (its _model); at batch 1
that step is bound by the host (docs/performance.md section 7), so a cache that costs a few microseconds more per
layer in isolation (scripts/live_fused_host_time.py) can still cost milliseconds per step inside the model. This
script builds the same model, prefills `tokens` random tokens per cache, and for each cache prints: the host ms of
model(...) (no synchronise) and the step's wall ms (synchronised), medians of 10 steps; the CUDA runtime calls of
one step other than kernel launches, by name (live_layers.runtime_calls; torch.profiler traces every runtime call of
the process: the *Async ones do not block the host, but each costs a host-bound step more than a launch); and cProfile's top
Python functions by own time over 5 steps, so that a difference between the caches can be read off by function.
"""
import argparse
import cProfile
import io
import pstats
import statistics
import time

import torch
from transformers import DynamicCache

from vidkv import bench_live
from vidkv.fused_attention import use_fused_attention
from vidkv.hf import VidKVCache

from live_layers import LAUNCHES, runtime_calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tokens", nargs="?", type=int, default=32768)
    ap.add_argument("--presets", default="kivi-2")
    ap.add_argument("--top", type=int, default=18)
    a = ap.parse_args()
    args = bench_live._parse(["--live", "--tokens", str(a.tokens), "--steps", "16"])
    torch.backends.cuda.enable_cudnn_sdp(False)  # bench --live's default backends: flash, efficient, math
    model, cfg = bench_live._model(torch, args)
    g = torch.Generator(device="cpu").manual_seed(0)
    prompt = torch.randint(0, cfg.vocab_size, (1, a.tokens), generator=g).to("cuda")
    runs = [("DynamicCache", DynamicCache, "sdpa")]
    for p in [x for x in a.presets.split(",") if x]:
        runs.append((f"VidKVCache {p}", lambda p=p: VidKVCache({"preset": p}), "sdpa"))
        runs.append((f"VidKVCache {p} fused", lambda p=p: VidKVCache({"preset": p}, attention="fused"), "fused"))
    for name, make, attn in runs:
        if attn == "fused":
            use_fused_attention(model)
        else:
            model.set_attn_implementation("sdpa")
        cache = make()
        with torch.inference_mode():
            out = model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1:].argmax(-1)
            del out
            for _ in range(3):
                nxt = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)
            torch.cuda.synchronize()
            host, wall = [], []
            for _ in range(10):
                t0 = time.perf_counter()
                out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                t1 = time.perf_counter()
                nxt = out.logits[:, -1:].argmax(-1)
                del out
                torch.cuda.synchronize()
                t2 = time.perf_counter()
                host.append((t1 - t0) * 1e3)
                wall.append((t2 - t0) * 1e3)
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                nxt = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)
                torch.cuda.synchronize()
            calls = runtime_calls(prof)
            launches = sum(e.count for e in prof.key_averages() if e.key in LAUNCHES)
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(5):
                nxt = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)
            torch.cuda.synchronize()
            pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(a.top)
        print(f"## {name}: host {statistics.median(host):.2f} ms, wall {statistics.median(wall):.2f} ms per step; "
              f"{launches} kernel launches per step; other runtime calls per step (the closing "
              f"synchronise included; *Async ones do not block): {', '.join(f'{k} x{n}' for k, n in calls) or 'none'}")
        print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:5000], flush=True)
        del cache
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
