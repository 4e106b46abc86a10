"""Host time of one layer's decode-step update in the live cache against DynamicCache (issue 12, docs/performance.md 7).

On a GPU machine: PYTHONPATH=experiments/python:build-cuda/python python3 scripts/live_update_host_time.py
Prints host and wall microseconds per call of VidKVCache.update (one token, 8k cached), its append and materialize
parts, with and without a synchronise after each call (a decode step synchronises), and a cProfile of 100 updates."""
import cProfile
import io
import pstats
import time

import torch
from vidkv.hf import VidKVCache
from transformers import DynamicCache


dev = "cuda"
H, D, T = 4, 128, 8192
torch.manual_seed(0)
kp = torch.randn(1, H, T, D, dtype=torch.float16, device=dev)
vp = torch.randn_like(kp)
k1 = torch.randn(1, H, 1, D, dtype=torch.float16, device=dev)
v1 = torch.randn_like(k1)

def timed(fn, n=300, sync=False):
    fn(); torch.cuda.synchronize()
    if sync:  # as a decode step does: the host waits for the GPU after every call
        t0 = time.perf_counter()
        for _ in range(n): fn(); torch.cuda.synchronize()
        w = (time.perf_counter() - t0) / n * 1e6
        return w, w
    t0 = time.perf_counter()
    for _ in range(n): fn()
    host = (time.perf_counter() - t0) / n * 1e6
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / n * 1e6
    return host, wall

def dyn():
    c = DynamicCache()
    c.update(kp, vp, 0)
    return c

print("| cache | op | host us/call | wall us/call |")
c = dyn()
h, w = timed(lambda: c.update(k1, v1, 0)); print(f"| DynamicCache | update | {h:.1f} | {w:.1f} |")
h, w = timed(lambda: c.update(k1, v1, 0), 100, sync=True); print(f"| DynamicCache | update + synchronize | {h:.1f} | {w:.1f} |")
for preset in ["fp16", "kivi-2", "vidkv-k1.5-v1.58"]:
    c = VidKVCache({"preset": preset})
    c.update(kp, vp, 0)
    c.update(k1, v1, 0)
    layer = c.layers[0]
    h, w = timed(lambda: c.update(k1, v1, 0), 100); print(f"| {preset} | update | {h:.1f} | {w:.1f} |")
    h, w = timed(lambda: c.update(k1, v1, 0), 100, sync=True); print(f"| {preset} | update + synchronize | {h:.1f} | {w:.1f} |")
    lc = layer.caches[0]
    kk, vv = k1[0].contiguous(), v1[0].contiguous()
    h, w = timed(lambda: lc.append_tensors(kk, vv), 200); print(f"| {preset} | append_tensors | {h:.1f} | {w:.1f} |")
    n = lc.tokens
    ko = torch.empty(H, n, D, dtype=torch.float16, device=dev); vo = torch.empty_like(ko)
    h, w = timed(lambda: lc.materialize_into(ko, vo), 200); print(f"| {preset} | materialize_into | {h:.1f} | {w:.1f} |")
    h, w = timed(lambda: (torch.empty(1, H, n, D, dtype=torch.float16, device=dev), torch.empty(1, H, n, D, dtype=torch.float16, device=dev)), 200); print(f"| {preset} | 2x torch.empty | {h:.1f} | {w:.1f} |")
    h, w = timed(lambda: lc.tokens, 2000); print(f"| {preset} | binding call (tokens) | {h:.2f} | {w:.2f} |")
    c = VidKVCache({"preset": preset}); c.update(kp, vp, 0); c.update(k1, v1, 0)
    pr = cProfile.Profile(); pr.enable()
    for _ in range(100): c.update(k1, v1, 0)
    torch.cuda.synchronize(); pr.disable()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12); print(s.getvalue()[:3000])
