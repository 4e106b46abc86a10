"""Does a decode step of the cache make the host wait for the GPU? (the live cache on the GPU, issues 12 and 13)

On a GPU machine: PYTHONPATH=experiments/python:build-cuda/python python3 scripts/live_host_waits.py [tokens]

A decode step of a 7B model at batch 1 is bound by the host: the host queues the step's kernels ahead of the GPU,
and the step costs max(host, GPU) only while the host never waits. One wait per layer (a synchronise, a blocking
copy, an allocation that synchronises) turns it into host + GPU. This script finds such waits without a profiler:
for 28 layers of 4 KV heads x 128 (GQA 7) holding `tokens` tokens it queues a GPU spin of `--backlog-ms` (default
20 ms: torch.cuda._sleep) in front of each layer's cache.update and attention call, and reports the host time of
the update and of the attention call separately (no synchronise in between). A call that never waits returns in
microseconds; one that waits returns after the backlog. Then torch.profiler lists the CUDA runtime calls of one
step other than kernel launches (live_layers.runtime_calls: synchronisations, events, stream waits, copies,
allocations) with their counts, so that a wait found above can be named: the profiler traces every runtime call of
the process, VidKV's included. Of those, the *Async ones do not block the host and a cudaEventSynchronize blocks only
until its event (which may be long complete); but each costs a host-bound step more than a launch does. Prints a markdown table per cache: DynamicCache + SDPA (the control), VidKVCache(preset) materializing,
VidKVCache(preset, attention="fused").
"""
import argparse
import statistics
import time

import torch
from transformers import DynamicCache

from live_layers import D, H, L, QH, LiveLayers, runtime_calls
from vidkv.hf import VidKVCache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tokens", nargs="?", type=int, default=32768)
    ap.add_argument("--presets", default="fp16,kivi-2,vidkv-k1.5-v1.58")
    ap.add_argument("--backlog-ms", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("live_host_waits.py: needs a CUDA device")
    T, dev = a.tokens, "cuda"
    layers = LiveLayers(T, dev)
    k1, v1 = layers.k1, layers.v1
    fused, dense, fill = layers.fused, layers.dense, layers.fill

    # GPU cycles per ms, measured: the spin's length in cycles depends on the clock.
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    torch.cuda._sleep(10_000_000)
    e1.record()
    torch.cuda.synchronize()
    cycles = int(a.backlog_ms * 10_000_000 / e0.elapsed_time(e1))

    def waits(cache, attend):
        """Median over steps of the host ms of update and of attention per layer, each behind a fresh backlog."""
        upd, att = [], []
        for _ in range(a.steps):
            for layer in range(L):
                torch.cuda._sleep(cycles)
                t0 = time.perf_counter()
                kk, vv = cache.update(k1, v1, layer)
                t1 = time.perf_counter()
                attend(kk, vv)
                t2 = time.perf_counter()
                upd.append((t1 - t0) * 1e3)
                att.append((t2 - t1) * 1e3)
                torch.cuda.synchronize()
        return statistics.median(upd), max(upd), statistics.median(att), max(att)

    def blocking_calls(cache, attend):
        from torch.profiler import ProfilerActivity, profile

        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            layers.step(cache, attend)
            torch.cuda.synchronize()
        # the step's closing torch.cuda.synchronize() is the script's own: one cudaDeviceSynchronize
        return ", ".join(f"{k} x{n}" for k, n in runtime_calls(prof)) or "none"

    print(f"{L} layers x {H} KV heads x {D}, {QH} query heads, {T} cached tokens, batch 1; a {a.backlog_ms:g} ms GPU "
          f"backlog queued before each layer; host ms per call, median (max) over {a.steps} steps x {L} layers\n")
    print("| cache | update host ms | attention host ms | CUDA runtime calls in one step besides launches (*Async: non-blocking) |")
    print("| --- | ---: | ---: | --- |")
    runs = [("DynamicCache + sdpa", lambda: DynamicCache(), dense)]
    for preset in [p for p in a.presets.split(",") if p]:
        runs.append((f"VidKVCache {preset} (materialize) + sdpa", lambda p=preset: VidKVCache({"preset": p}), dense))
        runs.append((f"VidKVCache {preset} fused",
                     lambda p=preset: VidKVCache({"preset": p}, attention="fused"), fused))
    for name, make, attend in runs:
        cache = make()
        if attend == fused:
            cache._fused_attention_seen = True  # no model: the prefill's attention call is made by fill()
        fill(cache, attend)
        layers.step(cache, attend)  # a first decode step (encodes the held prefill)
        torch.cuda.synchronize()
        um, ux, am, ax = waits(cache, attend)
        calls = blocking_calls(cache, attend)
        print(f"| {name} | {um:.3f} ({ux:.3f}) | {am:.3f} ({ax:.3f}) | {calls} |", flush=True)
        del cache
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
