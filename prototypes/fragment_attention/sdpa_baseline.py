"""fp16 scaled_dot_product_attention (GQA: 28 query heads over 4 KV heads, head_dim 128, one query token) on the
shapes of fragment_attention.cu, median of 50 CUDA-event timings: the baseline of that prototype. Needs torch >= 2.5 (enable_gqa)."""
import torch, torch.nn.functional as F
for b, t in [(1, 32768), (1, 65536), (8, 32768), (8, 65536)]:
    q = torch.randn(b, 28, 1, 128, device="cuda", dtype=torch.float16)
    k = torch.randn(b, 4, t, 128, device="cuda", dtype=torch.float16)
    v = torch.randn_like(k)
    for _ in range(10): F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    ts = []
    for _ in range(50):
        s, e = torch.cuda.Event(True), torch.cuda.Event(True)
        s.record(); F.scaled_dot_product_attention(q, k, v, enable_gqa=True); e.record(); e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    print(f"SDPA fp16 batch {b} tokens {t}: {ts[len(ts)//2]:.4f} ms (min {ts[0]:.4f})")
