"""Host and GPU time of one decode step's cache + attention work, fused VidKVCache against DynamicCache + SDPA.

On a GPU machine: PYTHONPATH=experiments/python:build-cuda/python python3 scripts/live_fused_host_time.py [tokens]

A decode step of a 7B model at batch 1 is bound by the host (docs/performance.md section 7): what the cache and
attention add to it is their host time per layer, and any wait of the host for the GPU. This script runs, for 28
layers of 4 KV heads x 128 (GQA 7, the bench model's geometry) holding `tokens` tokens, the per-layer work of a
decode step without the model: cache.update of one token, then attention of one query token (DynamicCache and
the materialising VidKVCache: transformers' sdpa_attention_forward on the K/V update returns, with the flash /
efficient / math backends, as `vidkv bench --live`; VidKVCache(attention="fused"): the "vidkv_fused" function). It prints per step: host ms (no synchronise), wall ms
with one synchronise at the end of the step, GPU ms (CUDA events), and a cProfile of the fused steps (the top
entries by own time). Figures: docs/performance.md section 8.
"""
import cProfile
import io
import pstats
import statistics
import sys
import time

import torch
from transformers import DynamicCache

from live_layers import D, H, L, QH, LiveLayers
from vidkv.hf import VidKVCache

dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke run (small tokens), GPU ms not measured
T = int(sys.argv[1]) if len(sys.argv) > 1 else 32768
layers = LiveLayers(T, dev)
attention, dense, fill, step = layers.fused, layers.dense, layers.fill, layers.step


def sync():
    if dev == "cuda":
        torch.cuda.synchronize()


def measure(cache, attend, n=20):
    host, wall, gpu = [], [], []
    cuda = dev == "cuda"
    if cuda:
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        step(cache, attend)
    sync()
    for _ in range(n):
        t0 = time.perf_counter()
        if cuda:
            e0.record()
        step(cache, attend)
        if cuda:
            e1.record()
        t1 = time.perf_counter()
        sync()
        t2 = time.perf_counter()
        host.append((t1 - t0) * 1e3)
        wall.append((t2 - t0) * 1e3)
        gpu.append(e0.elapsed_time(e1) if cuda else float("nan"))
    return statistics.median(host), statistics.median(wall), statistics.median(gpu)


print(f"{L} layers x {H} KV heads x {D}, {QH} query heads, {T} cached tokens, batch 1; ms per decode step "
      f"(median of 20)\n")
print("| cache | host ms | wall ms (sync at step end) | GPU ms |")
print("| --- | ---: | ---: | ---: |")
c = DynamicCache()
fill(c, None)
h, w, g = measure(c, dense)
print(f"| DynamicCache + sdpa | {h:.2f} | {w:.2f} | {g:.2f} |", flush=True)  # GPU nan: a cpu run
del c
for preset in ["kivi-2", "vidkv-k1.5-v1.58"]:  # materialising: update() returns the decoded K/V, then SDPA
    c = VidKVCache({"preset": preset})
    fill(c, None)
    h, w, g = measure(c, dense)
    print(f"| VidKVCache {preset} (materialize) + sdpa | {h:.2f} | {w:.2f} | {g:.2f} |", flush=True)
    del c
profiles = {}
for preset in ["kivi-2", "vidkv-k1.5-v1.58"]:
    c = VidKVCache({"preset": preset}, attention="fused")
    c._fused_attention_seen = True
    fill(c, attention)
    h, w, g = measure(c, attention)
    print(f"| VidKVCache {preset} fused | {h:.2f} | {w:.2f} | {g:.2f} |", flush=True)
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(10):
        step(c, attention)
    sync()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(14)
    profiles[preset] = s.getvalue()
    del c
for preset, text in profiles.items():
    print(f"\ncProfile, 10 steps, {preset} fused (tottime = own time):")
    print("\n".join(line for line in text.splitlines() if line.strip())[:4000])
