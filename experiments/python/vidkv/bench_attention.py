"""PyTorch fp16 scaled_dot_product_attention latency for `vidkv bench --attention` (experiments/src/attention_bench.h).

Runs as its own process (the C++ command starts it and reads the JSON it prints): one decode step per sequence,
q [B, kv_heads, query_heads_per_kv, D] fp16 against K/V [B, kv_heads, T, D] fp16 on the GPU. The GQA query heads of
a KV head are passed as that head's query rows, which is the same attention as the grouped query heads (no causal
mask at decode) and reads each K/V head once: the most favourable fp16 baseline. Timed with CUDA events, `warmup`
untimed calls, median of `repeats`. Prints {"torch_ms": [...], "device": ..., "torch": ...}, batch outer, tokens
inner, as the C++ table orders them.
"""

import argparse
import json
import statistics
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--tokens", default="8192,16384,32768,65536,131072")
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--query-heads-per-kv", type=int, default=7)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:  # the C++ side prints the table without the torch column
        print(json.dumps({"error": f"no torch: {e}"}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        return 0
    dev = torch.device("cuda")
    out = []
    for b in [int(x) for x in a.batches.split(",") if x]:
        for t in [int(x) for x in a.tokens.split(",") if x]:
            g = torch.Generator(device=dev).manual_seed(0)
            q = torch.randn(b, a.kv_heads, a.query_heads_per_kv, a.head_dim, device=dev, dtype=torch.float16, generator=g)
            k = torch.randn(b, a.kv_heads, t, a.head_dim, device=dev, dtype=torch.float16, generator=g)
            v = torch.randn(b, a.kv_heads, t, a.head_dim, device=dev, dtype=torch.float16, generator=g)
            for _ in range(a.warmup):
                F.scaled_dot_product_attention(q, k, v)
            torch.cuda.synchronize()
            times = []
            for _ in range(a.repeats):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                F.scaled_dot_product_attention(q, k, v)
                e.record()
                e.synchronize()
                times.append(s.elapsed_time(e))
            out.append(statistics.median(times))
            del q, k, v
            torch.cuda.empty_cache()
    print(json.dumps({"torch_ms": out, "device": torch.cuda.get_device_name(0), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
