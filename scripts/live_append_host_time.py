"""Host time of one layer's decode-step append in the live cache on the GPU, per codec and lifecycle (issues 12, 13;
docs/performance.md section 8, "KIVI's value encode per step").

On a GPU machine: PYTHONPATH=experiments/python:build-cuda/python python3 scripts/live_append_host_time.py [--steps N]

A `_vidkv.LayerCache` on cuda:0 (4 KV heads x 128 channels, fp16, the current torch stream) takes an 8192-token
prefill, 50 untimed decode steps, then `--steps` timed one-token `_vidkv.append_rows` calls (host microseconds, no
synchronise: what a decode step's host pays) and 200 with a synchronise after each; two rounds of: kivi-2 under its
own lifecycle (KIVI: one value token quantized per step and merged into the tail block), the same with
VIDKV_KIVI_VALUE_MERGE=off (one-token blocks kept apart), kivi-2, vidkv-k1.5-v1.58 and fp16 under the paper
lifecycle (a block every R = 128 steps)."""
import argparse
import os
import statistics
import time

import torch

import _vidkv

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--steps", type=int, default=600, help="timed steps per cache (default 600)")
cli = ap.parse_args()
H, D, T = 4, 128, 8192
dev = "cuda:0"
stream = torch.cuda.current_stream().cuda_stream


def run(codec, lifecycle, label):
    cache = _vidkv.LayerCache(codec, lifecycle, H, D, 0, 0, "fp16", dev, stream)
    cache.append_tensors(torch.randn(H, T, D, dtype=torch.float16, device=dev),
                         torch.randn(H, T, D, dtype=torch.float16, device=dev))
    k = torch.randn(1, H, 1, D, dtype=torch.float16, device=dev)
    v = torch.randn_like(k)
    for _ in range(50):
        _vidkv.append_rows([cache], k, v)
    torch.cuda.synchronize()
    host = []
    for _ in range(cli.steps):
        t0 = time.perf_counter()
        _vidkv.append_rows([cache], k, v)
        host.append((time.perf_counter() - t0) * 1e6)
    torch.cuda.synchronize()
    synced = []
    for _ in range(200):
        t0 = time.perf_counter()
        _vidkv.append_rows([cache], k, v)
        torch.cuda.synchronize()
        synced.append((time.perf_counter() - t0) * 1e6)
    print(f"{label:42s} host median {statistics.median(host):7.1f} us, mean {statistics.mean(host):7.1f}"
          f" | synchronised median {statistics.median(synced):7.1f}", flush=True)


kivi = {"preset": "kivi-2"}
for _ in range(2):
    os.environ.pop("VIDKV_KIVI_VALUE_MERGE", None)
    run(kivi, _vidkv.codec_lifecycle(kivi), "kivi-2 (kivi lifecycle)")
    os.environ["VIDKV_KIVI_VALUE_MERGE"] = "off"
    run(kivi, _vidkv.codec_lifecycle(kivi), "kivi-2 (kivi lifecycle), merge off")
    os.environ.pop("VIDKV_KIVI_VALUE_MERGE", None)
    run(kivi, {"type": "paper"}, "kivi-2 (paper lifecycle)")
    run({"preset": "vidkv-k1.5-v1.58"}, {"type": "paper"}, "vidkv-k1.5-v1.58 (paper lifecycle)")
    run({"preset": "fp16"}, {"type": "paper"}, "fp16 (paper lifecycle)")
