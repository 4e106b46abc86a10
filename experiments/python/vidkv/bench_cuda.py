"""PyTorch on CUDA beside `vidkv bench --backend cuda`: the same math as the presets' CUDA codecs, written with
vectorised torch ops the way the released code computes (KIVI's and VidKV's PyTorch paths), timed in the process
that runs the C++ bench (experiments/src/cuda_bench.h), on the same synthetic layers and shapes.

What is computed, per layer (K and V [heads, T, head_dim] fp16 on the GPU), encode then decode:
  kivi-2          keys: asymmetric min/max per channel over groups of 32 tokens, values: per token over groups of
                  32 channels; statistics, scale, codes and reconstruction in fp16 (as KIVI's PyTorch path), codes
                  packed 16 per int32 word with shifts (KIVI's pack layout), fp16 scale and min kept.
  vidkv-k1.5-v1.58  keys: channel range over the layer (amax - amin over heads and tokens), the top half of the
                  channels by range get kivi's 2-bit per-channel code (packed as above), the other half go through
                  a real FFT along the channels (torch.fft.rfft, in fp32: cuFFT) and keep 1 bit per component (sign)
                  with an fp16 mean |.| per group of 32 tokens, packed 32 per int32 word; values: ternary with dead
                  zone 0.7 * mean |x| per group of 32 tokens and channel, trits packed 5 per byte (base 3);
                  decode inverts each step (bit * scale, irfft, trit - 1), writing fp16.
The packed tensors are real (int32 words / uint8 bytes), so the comparison includes the packing and unpacking
work. Throughput counts the same bytes as the C++ bench: K + V in fp16 per layer. Timing: CUDA events around one
pass over all layers, after warm-up passes, median of repeats; layers are distinct device tensors (more than L2).
"""
from __future__ import annotations

_SHIFT_CACHE: dict = {}


def _shifts(torch, per, bits, device):
    key = (per, bits, device)
    if key not in _SHIFT_CACHE:
        _SHIFT_CACHE[key] = torch.arange(per, dtype=torch.int32, device=device) * bits
    return _SHIFT_CACHE[key]


def uniform_encode(torch, x, bits, dim):
    """Asymmetric min/max over groups of 32 along `dim` (1: tokens, per-channel; 2: channels, per-token), fp16."""
    h, t, d = x.shape
    g = x.reshape(h, t // 32, 32, d) if dim == 1 else x.reshape(h, t, d // 32, 32)
    red = 2 if dim == 1 else 3
    mn = g.amin(dim=red, keepdim=True)
    mx = g.amax(dim=red, keepdim=True)
    top = (1 << bits) - 1
    scale = (mx - mn) / top
    q = ((g - mn) / scale).nan_to_num_(0.0).clamp_(0, top).round_().to(torch.int32)
    per = 32 // bits
    q = q.movedim(red, -1)
    q = q.reshape(*q.shape[:-1], 32 // per, per)
    packed = (q << _shifts(torch, per, bits, x.device)).sum(dim=-1, dtype=torch.int32)  # disjoint bits: sum == or
    return packed, scale, mn


def uniform_decode(torch, packed, scale, mn, bits, dim, shape):
    h, t, d = shape
    per = 32 // bits
    q = ((packed.unsqueeze(-1) >> _shifts(torch, per, bits, packed.device)) & ((1 << bits) - 1))
    q = q.reshape(*packed.shape[:-1], 32).to(scale.dtype)
    red = 2 if dim == 1 else 3
    q = q.movedim(-1, red)
    return (q * scale + mn).reshape(h, t, d)


def sign_encode(torch, x):
    """1 bit per value (x >= 0) and mean |x| (fp16) per channel over groups of 32 tokens; 32 bits per int32."""
    h, t, d = x.shape
    g = x.reshape(h, t // 32, 32, d)
    s = g.abs().mean(dim=2, keepdim=True).half()
    bits = (g >= 0).to(torch.int32).movedim(2, -1)
    packed = (bits << _shifts(torch, 32, 1, x.device)).sum(dim=-1, dtype=torch.int32)
    return packed, s


def sign_decode(torch, packed, s, shape):
    h, t, d = shape
    bits = ((packed.unsqueeze(-1) >> _shifts(torch, 32, 1, packed.device)) & 1).float().movedim(-1, 2)
    return (bits * s.float()).reshape(h, t, d)


_TRIT_WEIGHTS: dict = {}


def _weights(torch, device):
    if device not in _TRIT_WEIGHTS:
        _TRIT_WEIGHTS[device] = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int32, device=device)
    return _TRIT_WEIGHTS[device]


def ternary_encode(torch, x, gamma):
    """Trits (x > a, |x| <= a, x < -a) with a = gamma * mean |x| per channel over 32 tokens; 5 trits per byte."""
    h, t, d = x.shape
    g = x.reshape(h, t // 32, 32, d)
    a = gamma * g.abs().mean(dim=2, keepdim=True)
    trits = ((g > a).to(torch.uint8) - (g < -a).to(torch.uint8) + 1).movedim(2, -1).reshape(-1)
    pad = (-trits.numel()) % 5
    if pad:
        trits = torch.cat([trits, trits.new_zeros(pad)])
    trits = trits.reshape(-1, 5).to(torch.int32)
    return (trits * _weights(torch, x.device)).sum(dim=-1).to(torch.uint8)


def ternary_decode(torch, packed, shape, dtype):
    h, t, d = shape
    trits = (packed.to(torch.int32).unsqueeze(-1) // _weights(torch, packed.device)) % 3
    trits = trits.reshape(-1)[: h * t * d].reshape(h, t // 32, d, 32).to(dtype) - 1
    return trits.movedim(3, 2).reshape(h, t, d)


def kivi2(torch, k, v):
    kp = uniform_encode(torch, k, 2, dim=1)
    vp = uniform_encode(torch, v, 2, dim=2)
    return (kp, vp), lambda: (uniform_decode(torch, *kp, 2, 1, k.shape), uniform_decode(torch, *vp, 2, 2, v.shape))


def vidkv_k15_v158(torch, k, v):
    h, t, d = k.shape
    rng = k.amax(dim=(0, 1)) - k.amin(dim=(0, 1))
    high = torch.topk(rng, d // 2).indices.sort().values
    mask = torch.zeros(d, dtype=torch.bool, device=k.device)
    mask[high] = True
    low = (~mask).nonzero().squeeze(1)
    kh, kl = k[:, :, high].contiguous(), k[:, :, low].float()
    hp = uniform_encode(torch, kh, 2, dim=1)
    n = kl.shape[-1]
    ri = torch.view_as_real(torch.fft.rfft(kl, dim=-1))
    # Real layout: [Re X0, Re X1, Im X1, ..., Re X(n/2)], n reals.
    comps = torch.cat([ri[..., 0, :1], ri[..., 1 : n // 2, :].reshape(h, t, -1), ri[..., n // 2, :1]], dim=-1)
    lp = sign_encode(torch, comps.contiguous())
    vp = ternary_encode(torch, v, 0.7)
    kh_shape, comps_shape = kh.shape, comps.shape  # the closure keeps the packed data only
    del kh, kl, ri, comps

    def decode():
        k_hat = torch.empty_like(k)
        k_hat[:, :, high] = uniform_decode(torch, *hp, 2, 1, kh_shape)
        c = sign_decode(torch, *lp, comps_shape)
        spec = torch.zeros(h, t, n // 2 + 1, 2, device=k.device)
        spec[..., 0, 0] = c[..., 0]
        spec[..., 1 : n // 2, :] = c[..., 1 : n - 1].reshape(h, t, n // 2 - 1, 2)
        spec[..., n // 2, 0] = c[..., n - 1]
        k_hat[:, :, low] = torch.fft.irfft(torch.view_as_complex(spec), n=n, dim=-1).to(k.dtype)
        return k_hat, ternary_decode(torch, vp, v.shape, v.dtype)

    return (hp, lp, vp, high), decode


PRESETS = {"kivi-2": kivi2, "vidkv-k1.5-v1.58": vidkv_k15_v158}


def _median_ms(torch, fn, warmup, repeats):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def layers_on_device(torch, vidkv_ext, tokens, layers, heads, head_dim, distinct=4):
    """`layers` distinct fp16 device tensors per side, the C++ bench's synthetic layers (same generator and spec)."""
    distinct = min(distinct, layers)
    shape = f"{distinct}x{heads}x{tokens}x{head_dim}"
    base = []
    for layer in range(distinct):
        k, v = vidkv_ext.synthetic_layer(shape, layer)
        base.append((torch.from_numpy(k).cuda().half(), torch.from_numpy(v).cuda().half()))
    return [(base[i % distinct][0].clone(), base[i % distinct][1].clone()) for i in range(layers)]


def torch_encode_decode_gbps(torch, preset, layers, warmup, repeats):
    """(encode+decode GB/s of fp16 K+V, relative L2 errors of the last layer) or (0, None) for unknown presets."""
    fn = PRESETS.get(preset)
    if fn is None:
        return 0.0, None
    packed = []

    def encode():
        packed.clear()
        for k, v in layers:
            packed.append(fn(torch, k, v)[1])

    def decode():
        for dec in packed:
            dec()

    encode()
    t_enc = _median_ms(torch, encode, warmup, repeats)
    t_dec = _median_ms(torch, decode, warmup, repeats)
    k, v = layers[-1]
    k_hat, v_hat = packed[-1]()
    err = (float(((k_hat.float() - k.float()).norm() / k.float().norm()).item()),
           float(((v_hat.float() - v.float()).norm() / v.float().norm()).item()))
    nbytes = sum(2 * k.numel() * 2 for k, _ in layers)
    return nbytes / ((t_enc + t_dec) * 1e-3) / 1e9, err


def main(argv, vidkv_ext):
    """`vidkv bench --backend cuda` in the embedded interpreter: the C++ CUDA bench, then torch on the same shapes."""
    import argparse  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="vidkv bench --backend cuda", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="cuda", choices=["cuda"])
    p.add_argument("--shape", default=None, help="LxHxTxD (one token count)")
    p.add_argument("--tokens", default="8192,32768,65536")
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--presets", default="kivi-2,vidkv-k1.5-v1.58")
    p.add_argument("--no-torch", action="store_true")
    a = p.parse_args(argv)
    heads, head_dim = 4, 128
    tokens = [int(t) for t in a.tokens.split(",") if t]
    layers = a.layers
    if a.shape:
        layers, heads, t, head_dim = (int(x) for x in a.shape.lower().split("x"))
        tokens = [t]
    presets = [s for s in a.presets.split(",") if s]
    try:
        result = vidkv_ext.cuda_bench(tokens=tokens, layers=layers, heads=heads, head_dim=head_dim, repeats=a.repeats,
                                      presets=presets)
    except vidkv_ext.NotSupportedError as exc:  # no CUDA build or no GPU: the C++ message says which
        raise SystemExit(f"vidkv: error: {exc}") from None
    torch = None
    why = ""
    if not a.no_torch:
        try:
            import torch  # noqa: PLC0415
            if not torch.cuda.is_available():
                why = f"torch {torch.__version__} sees no CUDA device"
                torch = None
        except ImportError:
            why = "torch is not importable from this environment"
    gbps, notes = [], []
    if torch is not None:
        rows = result.rows
        by_row = {}
        for t in tokens:
            todo = [r for r in rows if r["tokens"] == t and not r["skipped"]]
            if not todo:
                continue
            dev_layers = layers_on_device(torch, vidkv_ext, t, layers, heads, head_dim)
            for row in todo:
                g, err = torch_encode_decode_gbps(torch, row["preset"], dev_layers, 3, a.repeats)
                by_row[(t, row["preset"])] = g
                if err:
                    notes.append(f"torch {row['preset']} at {t} tokens: relative L2 error K {err[0]:.4f}, V {err[1]:.4f}")
            del dev_layers
            torch.cuda.empty_cache()
        gbps = [by_row.get((r["tokens"], r["preset"]), 0.0) for r in rows]
    print(result.markdown(gbps))
    if torch is None:
        print("PyTorch column: not measured (" + (why or "--no-torch") + ")")
    else:
        print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name(0)}, same process, same layer shapes "
              "(experiments/python/vidkv/bench_cuda.py says what it computes and packs).")
        for n in notes:
            print(n)
    return 0
