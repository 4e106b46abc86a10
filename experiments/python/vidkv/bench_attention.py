"""PyTorch fp16 scaled_dot_product_attention latency for `vidkv bench --attention` (experiments/src/attention_bench.h).

Runs as its own process (the C++ command starts it and reads the JSON it prints): one decode step per sequence,
K/V [B, kv_heads, T, D] fp16 on the GPU, one query token per query head. The baseline is the fastest of these ways of
calling SDPA on the same data, timed one after the other (each: `warmup` untimed calls, then the median of `repeats`,
CUDA events):

* "gqa": q [B, kv_heads * query_heads_per_kv, 1, D] with enable_gqa=True, torch's own backend choice: what
  transformers' sdpa_attention_forward calls at a decode step without a mask;
* "gqa flash", "gqa cudnn", "gqa efficient": the same with only that backend enabled (torch.nn.attention.sdpa_kernel;
  a backend that refuses the shape is left out);
* "rows": q [B, kv_heads, query_heads_per_kv, D], the GQA query heads of a KV head as that head's query rows (the same
  attention: no causal mask at decode). On torch 2.11 / H200 this was 2.8-3x slower than "gqa" at batch 8 (no split
  over the keys at this shape), so earlier versions of this script, which timed only it, overstated the fused
  kernel's speed-up; kept as a variant.

With --query-tokens N > 1 (the caches' last N tokens as queries, `vidkv bench --attention --query-tokens N`): q [B,
kv_heads * query_heads_per_kv, N, D] with the lower-right causal mask (query token j sees the first T - N + 1 + j
keys), as "gqa causal" (torch.nn.attention.bias.causal_lower_right) and "gqa mask" (the same as a boolean attn_mask),
each under torch's own backend choice and with cuDNN or efficient only; "rows" is left out.

Prints {"torch_ms": [...], "torch_variant": [...], "device": ..., "torch": ...}: per (batch, tokens), batch outer,
tokens inner as the C++ table orders them, the fastest time and the name of the variant that gave it (-1 and ""
when every variant failed: "not measured" in the table).
"""

import argparse
import json
import statistics
import sys
import warnings


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--tokens", default="8192,16384,32768,65536,131072")
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--query-heads-per-kv", type=int, default=7)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--query-tokens", type=int, default=1)
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
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev = torch.device("cuda")

    def timed(fn):
        for _ in range(a.warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(a.repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        return statistics.median(times)

    def only(backend, fn):
        def run():
            with sdpa_kernel(backend):
                return fn()
        return run

    out, names = [], []
    for b in [int(x) for x in a.batches.split(",") if x]:
        for t in [int(x) for x in a.tokens.split(",") if x]:
            g = torch.Generator(device=dev).manual_seed(0)
            rows = torch.randn(b, a.kv_heads, a.query_heads_per_kv, a.head_dim, device=dev, dtype=torch.float16, generator=g)
            k = torch.randn(b, a.kv_heads, t, a.head_dim, device=dev, dtype=torch.float16, generator=g)
            v = torch.randn(b, a.kv_heads, t, a.head_dim, device=dev, dtype=torch.float16, generator=g)
            heads = rows.reshape(b, a.kv_heads * a.query_heads_per_kv, 1, a.head_dim)
            n = a.query_tokens

            def gqa():
                return F.scaled_dot_product_attention(heads, k, v, enable_gqa=True)

            variants = [("gqa", gqa), ("gqa flash", only(SDPBackend.FLASH_ATTENTION, gqa)),
                        ("gqa cudnn", only(SDPBackend.CUDNN_ATTENTION, gqa)),
                        ("gqa efficient", only(SDPBackend.EFFICIENT_ATTENTION, gqa)),
                        ("rows", lambda: F.scaled_dot_product_attention(rows, k, v))]
            if n > 1:
                heads = torch.randn(b, a.kv_heads * a.query_heads_per_kv, n, a.head_dim, device=dev, dtype=torch.float16,
                                    generator=g)
                # Query token j sees keys [0, t - n + j]: lower-right aligned causal.
                mask = torch.ones(n, t, dtype=torch.bool, device=dev).tril(diagonal=t - n)
                variants = []
                try:
                    from torch.nn.attention.bias import causal_lower_right
                    bias = causal_lower_right(n, t)

                    def gqa_causal():
                        return F.scaled_dot_product_attention(heads, k, v, attn_mask=bias, enable_gqa=True)
                    variants.append(("gqa causal", gqa_causal))
                except ImportError:
                    pass

                def gqa_mask():
                    return F.scaled_dot_product_attention(heads, k, v, attn_mask=mask, enable_gqa=True)

                variants += [("gqa mask", gqa_mask), ("gqa mask cudnn", only(SDPBackend.CUDNN_ATTENTION, gqa_mask)),
                             ("gqa mask efficient", only(SDPBackend.EFFICIENT_ATTENTION, gqa_mask))]
            best = None
            for name, fn in variants:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # a backend that refuses the shape warns why, then raises
                        ms = timed(fn)
                except (RuntimeError, ValueError, TypeError, NotImplementedError):  # a variant that refuses the shape
                    continue
                if best is None or ms < best[0]:
                    best = (ms, name)
            if best is None:  # every variant raised (out of memory): the C++ table says "not measured"
                best = (-1.0, "")
            out.append(best[0])
            names.append(best[1])
            del rows, heads, k, v, variants
            torch.cuda.empty_cache()
    print(json.dumps({"torch_ms": out, "torch_variant": names, "device": torch.cuda.get_device_name(0), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
