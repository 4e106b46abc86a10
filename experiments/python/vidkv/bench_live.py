"""`vidkv bench --live`: decode speed and device memory of the live cache against fp16 DynamicCache, in one run.

A random-weight decoder is built from a config with a 7B VideoLLM's geometry (Qwen2-7B, the language model of
LLaVA-OneVision-7B and LLaVA-Video-7B: 28 layers, hidden 3584, 28 query heads, 4 KV heads, head_dim 128, GQA 7;
nothing is downloaded; --layers / --hidden shrink it for a quick look). For each prompt length (--tokens), batch
size (--batches: that many sequences, each with its own random prompt of that length) and cache (fp16
DynamicCache, then VidKVCache with every --presets entry under the preset's own lifecycle), the prompts are
prefilled (in passes of --prefill-chunk tokens per sequence where given), then --steps tokens are decoded one at a
time (with --fused, each preset once more with attention="fused": decode attention from the packed bits;
--fused-only drops the materialising runs; DynamicCache and the timed steps greedily, the other caches' accuracy
runs teacher-forced with DynamicCache's tokens), and the run prints the table below.

Prefill in passes (--prefill-chunk) is exact for DynamicCache, not for VidKVCache: the passes after the first are
appends, which its lifecycle takes by its decode-time rules, and their attention reads the earlier passes from the
quantized cache (as a chunked prefill with a quantized cache does). Under KIVI's lifecycle (kivi-2) the cache then
holds the same kind of blocks (whole R-blocks of keys, the values past the window as one block per pass): the same
bits; under the paper lifecycle (the vidkv presets) the cache differs from a one-pass prefill's (at 1,000 tokens in
passes of 256, vidkv-k1.5-v1.58's effective bits went from 2.08 to 3.43 on the CPU). The eff. bits column shows it;
compare such runs with that in mind, and prefer one pass where the memory allows it. Columns:

  ms/step      median wall time of one decode step of the whole batch (one new token per sequence;
               torch.cuda.synchronize around each step), and its ratio to DynamicCache at the same length and batch,
               timed with every cache held side by side (the caches of the accuracy runs, continued) and their decode
               steps interleaved one by one (DynamicCache's step, then each VidKVCache's, --rounds x --steps times;
               the first step of each dropped): at batch 1 the step is bound by the host, whose speed on a shared
               machine moved by up to 70% between runs minutes apart and, within a run, by more than the caches
               differ (docs/performance.md section 8), so a cache timed over its own seconds would measure the
               drift more than the cache; all caches are held at once for this (mind the device memory). With
               larger batches and prompts the step becomes bound by the GPU: DynamicCache then pays for reading its
               fp16 K/V in SDPA and for copying all of it each step (its torch.cat), VidKVCache for its kernels;
  cache MiB    bytes the cache holds after the prefill and the decode steps: VidKVCache's `cache.memory()`
               (packed blocks + residual window, from the allocations it made, spare room of its buffers included);
               DynamicCache's K/V tensors, scaled back to the prefill's length;
  bound MiB    the issue-12 bound: effective bits / 16 x the fp16 cache + one layer's fp16 K/V. It is meant for long
               prompts: at a few hundred tokens a VidKVCache's fixed parts (the residual window's buffers, grown
               ahead of need) exceed it, and a row above its bound says so with a '!' after its cache MiB;
  device MiB   (GPU runs only: '-' on the CPU) device memory in use right after the prefill minus before it (the
               earlier runs' caches held throughout, so the difference is this cache's), from
               cudaMemGetInfo
               (torch.cuda.mem_get_info, after synchronize + empty_cache): everything that stayed on the GPU, through
               torch's allocator or not (VidKVCache's packed blocks are cudaMallocAsync allocations that torch's
               counters do not see);
  torch peak   (GPU runs only) torch.cuda.max_memory_allocated() over prefill and decode minus before: activations, DynamicCache's
               tensors, VidKVCache's transient dequantized layer; not VidKVCache's packed blocks (in cache MiB).
  eff. bits    VidKVCache.bits()["effective_bits"] after the run (from the bytes stored);
  agree        teacher-forced greedy agreement with DynamicCache: every cache is fed DynamicCache's own greedy
               tokens, so its prediction at each of the steps + 1 positions (the prefill's, then each decode step's)
               of each sequence follows the same context as the reference's; counted where its argmax equals
               DynamicCache's, out of (steps + 1) x batch predictions. (Comparing
               free-running generations instead counts nothing after the first differing token, whatever the cause.)
  logit err    the largest |logit - DynamicCache's logit| over those positions and the vocabulary, relative to the
               largest |DynamicCache logit| (printed under the table). An argmax can differ from DynamicCache's only
               where the absolute error there reaches half of DynamicCache's top-2 margin, so the line under the
               table also gives, per cache, the smallest such margin among its disagreements and compares it with
               twice the cache's largest absolute error (logit err x that magnitude): at or below it, a near-tie;
               above it, a disagreement that the error does not explain (it says "ABOVE (look into it)").
The memory columns, the agreement and the logit error come from each cache's own run (prefill, then --steps
decode steps; the caches of the earlier runs stay held, untouched), before the interleaved timing.
A shape (length, batch) whose runs or timing run out of device memory (all its caches are held at once) gets one
"not measured" row and a line under the table saying which cache's run failed, the error, and torch's and the
device's memory at that moment; its caches are released and the next shape runs; the run then exits with status 1.

Every cache sees the same prompt and the same weights; the timed steps are decoded with each cache's own greedy
tokens.
Without a CUDA device the run exits with a message (use a CPU-sized --layers/--hidden/--tokens with --device cpu
for a smoke run).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


def _parse(argv):
    p = argparse.ArgumentParser(prog="vidkv bench --live", description=__doc__,  # the columns' definitions too
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--live", action="store_true", help="(this benchmark)")
    p.add_argument("--tokens", default="8192,32768", help="prompt lengths, comma-separated")
    p.add_argument("--batches", default="1",
                   help="batch sizes (sequences decoded together, each with its own random prompt of the same length), "
                        "comma-separated")
    p.add_argument("--prefill-chunk", type=int, default=0,
                   help="prefill in forward passes of at most this many tokens per sequence (0: the whole prompt in "
                        "one pass). A long prompt at batch > 1 needs it: one pass over batch x tokens holds the MLP's "
                        "activations of every token (at 7B geometry about 110 KB per token)")
    p.add_argument("--presets", default="fp16,kivi-2,vidkv-k1.5-v1.58",
                   help="VidKV presets, comma-separated (fp16: the exact codec, the cache's own overhead)")
    p.add_argument("--steps", type=int, default=32,
                   help="decode steps of each cache's memory run, and per round of the interleaved timing")
    p.add_argument("--rounds", type=int, default=3,
                   help="timed steps per cache = rounds x steps, the caches' steps interleaved one by one")
    p.add_argument("--layers", type=int, default=28, help="decoder layers (7B VideoLLM: 28)")
    p.add_argument("--hidden", type=int, default=3584, help="hidden size (7B: 3584; heads = hidden / 128)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="model dtype")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sdpa", default="flash,efficient,math",
                   help="scaled_dot_product_attention backends enabled for every cache (cudnn, flash, efficient, "
                        "math). cuDNN is off by default: in torch 2.11 it spends ~1.7 ms of host time per layer "
                        "and decode step on DynamicCache's growing tensors (measured with --profile), which would "
                        "slow the fp16 baseline, not the cache")
    p.add_argument("--fused", action="store_true",
                   help="also VidKVCache(attention='fused'): decode attention straight from the packed bits "
                        "(vidkv.fused_attention) for every preset")
    p.add_argument("--fused-only", action="store_true",
                   help="with --fused: the presets through the fused attention only (no materialising runs)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of one decode step per run")
    a = p.parse_args(argv)
    a.tokens = [int(x) for x in str(a.tokens).split(",") if x]
    try:
        a.batches = [int(x) for x in str(a.batches).split(",") if x]
    except ValueError:
        p.error(f"--batches {a.batches!r}: expected positive integers, comma-separated")
    if not a.batches or min(a.batches) < 1:
        p.error("--batches: expected positive integers, comma-separated")
    if a.fused_only and not a.fused:
        p.error("--fused-only needs --fused")
    if a.prefill_chunk < 0:
        p.error("--prefill-chunk >= 0 (0: the whole prompt in one pass)")
    a.presets = [x for x in str(a.presets).split(",") if x]
    if a.rounds < 1:
        p.error("--rounds >= 1")
    if a.steps < 2 or a.layers < 1 or a.hidden < 128 or a.hidden % 128:
        p.error("--steps >= 2, --layers >= 1, --hidden a positive multiple of 128 (head_dim 128)")
    return a


def _model(torch, a):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    heads = a.hidden // 128
    kv_heads = 4 if heads % 4 == 0 else 1
    cfg = Qwen2Config(vocab_size=152064, hidden_size=a.hidden, intermediate_size=int(a.hidden * 37 / 7) // 128 * 128,
                      num_hidden_layers=a.layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      head_dim=128, max_position_embeddings=max(a.tokens) + (a.rounds + 1) * a.steps + 16, rope_theta=1e6,
                      tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    dtype = torch.float16 if a.dtype == "fp16" else torch.bfloat16
    torch.manual_seed(a.seed)
    with torch.device(a.device):
        model = Qwen2ForCausalLM(cfg).to(dtype)
    model.eval()
    return model, cfg


def _sync(torch, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _return_freed(torch) -> None:
    """What torch's allocator and VidKV's pool hold freed goes back to the device (after a synchronize)."""
    import _vidkv

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    _vidkv.cuda_release_pool()


def _device_used(torch) -> int:
    _return_freed(torch)  # VidKV's freed scratch back to the device too: only live allocations count
    free, total = torch.cuda.mem_get_info()
    return total - free


def _profile(torch, model, cache, nxt):
    """Top CUDA and CPU ops of one more decode step (--profile); returns its greedy token [batch, 1]."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=8), flush=True)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8), flush=True)
    return out.logits[:, -1:].argmax(-1)


def _cache_bytes_dynamic(cache) -> int:
    n = 0
    for layer in cache.layers:
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                n += t.numel() * t.element_size()
    return n


def _next_token(model, ids, cache, **kwargs):
    """One forward pass of `ids` on `cache` and its greedy token [batch, 1] (kwargs: e.g. logits_to_keep=1)."""
    out = model(input_ids=ids, past_key_values=cache, use_cache=True, **kwargs)
    return out.logits[:, -1:].argmax(-1)


def _prefill(model, prompt, cache, chunk: int):
    """The prompt [batch, tokens] into `cache` in forward passes of at most `chunk` tokens per sequence (0: one pass);
    the last pass's output (logits of the last position only). A later pass attends to the cache as a multi-token
    step does (VidKVCache: through its materialised path, also with attention="fused")."""
    tokens = prompt.shape[1]
    step = tokens if chunk <= 0 else chunk
    for start in range(0, tokens, step):
        out = model(input_ids=prompt[:, start:start + step], past_key_values=cache, use_cache=True, logits_to_keep=1)
    return out


def _set_attention(model, attention: str) -> None:
    if attention == "fused":
        from vidkv.fused_attention import use_fused_attention

        use_fused_attention(model)
    else:
        model.set_attn_implementation("sdpa")


def _interleaved(torch, model, a, runs, caches, nxt) -> dict:
    """ms of single decode steps per run: the caches of the memory runs (every one prefilled and held), one decode
    step of each in turn, rounds x steps + 1 times (the first dropped), each fed its own greedy token (nxt[run]:
    [batch, 1] to start with); the attention implementation is set between steps, outside the timing."""
    with torch.inference_mode():
        times = {run: [] for run in runs}
        for i in range(a.rounds * a.steps + 1):
            for run in runs:
                _set_attention(model, run[1])
                _sync(torch, a.device)
                t0 = time.perf_counter()
                nxt[run] = _next_token(model, nxt[run], caches[run])
                _sync(torch, a.device)
                if i > 0:
                    times[run].append((time.perf_counter() - t0) * 1e3)
    model.set_attn_implementation("sdpa")
    return times


def _logits(model, ids, cache, **kwargs):
    """One forward pass of `ids` on `cache`: the last position's logits [batch, vocab] in fp32."""
    out = model(input_ids=ids, past_key_values=cache, use_cache=True, **kwargs)
    return out.logits[:, -1].float()


def _rows(logits):
    """Logits [vocab] or [batch, vocab] as [batch, vocab], on the host."""
    logits = logits.cpu()  # on the host: the reference's logits must not count in any cache's device memory
    return logits.reshape(-1, logits.shape[-1])


class _Reference:
    """DynamicCache's greedy run: per position j, its tokens (`tokens[j]`: one int per sequence of the batch), its
    logits ([batch, vocab], fp32, on the host) and top-2 margins (one per sequence); `largest`: the largest |logit|
    over all positions and sequences; `predictions`: positions x sequences."""

    def __init__(self):
        self.tokens, self.logits, self.margin, self.largest = [], [], [], 0.0

    def add(self, logits):
        logits = _rows(logits)
        top = logits.topk(2, dim=-1).values
        self.tokens.append([int(t) for t in logits.argmax(-1)])
        self.logits.append(logits)
        self.largest = max(self.largest, float(logits.abs().max()))
        self.margin.append([float(m) for m in top[:, 0] - top[:, 1]])

    @property
    def predictions(self) -> int:
        return sum(len(t) for t in self.tokens)


class _Agreement:
    """One cache's teacher-forced predictions against a _Reference: agreeing predictions (positions x sequences),
    the largest logit error relative to the reference's largest logit, the smallest reference margin among the
    disagreements. The reference run is complete before (its `largest` is final)."""

    def __init__(self, ref):
        self.ref, self.agree, self.error, self.margin = ref, 0, 0.0, None

    def add(self, j, logits):
        ref = self.ref
        logits = _rows(logits)
        for row, token in enumerate(logits.argmax(-1)):
            if int(token) == ref.tokens[j][row]:
                self.agree += 1
            elif self.margin is None or ref.margin[j][row] < self.margin:
                self.margin = ref.margin[j][row]
        self.error = max(self.error, float((logits - ref.logits[j]).abs().max()) / max(ref.largest, 1e-30))


def _run(torch, model, a, tokens, make_cache, prompt, ref=None):
    """One cache: prefill, then --steps decode steps; returns (cache, device bytes after the prefill, torch's
    peak bytes, a _Reference when ref is None (greedy: each step fed the previous prediction), else an _Agreement
    with ref (teacher-forced: step i fed ref's token i), the cache's own greedy tokens after the last step [batch,
    1]). The caches of earlier runs may be held: device bytes and the peak are taken relative to what was in use
    before this cache. Not timed (_interleaved times the steps)."""
    cuda = a.device.startswith("cuda")
    cache = make_cache()
    _sync(torch, a.device)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    used_before = _device_used(torch) if cuda else 0
    record = _Reference() if ref is None else _Agreement(ref)
    put = (lambda j, logits: record.add(logits)) if ref is None else record.add
    teacher = record if ref is None else ref  # whose tokens the steps are fed
    fed = lambda i: torch.tensor(teacher.tokens[i], device=prompt.device).view(-1, 1)  # noqa: E731  [batch, 1]
    with torch.inference_mode():
        logits = _prefill(model, prompt, cache, a.prefill_chunk).logits[:, -1].float()
        put(0, logits)
        _sync(torch, a.device)
        used_after = _device_used(torch) if cuda else 0
        for i in range(a.steps):
            logits = _logits(model, fed(i), cache)
            put(i + 1, logits)
        own = logits.argmax(-1).view(-1, 1)
        _sync(torch, a.device)
    peak = torch.cuda.max_memory_allocated() - before if cuda else 0
    if a.profile and cuda:  # one more step, fed the cache's own token; the timing continues from its prediction
        own = _profile(torch, model, cache, own)
    return cache, used_after - used_before, peak, record, own


class _OutOfMemory(Exception):
    """A shape's run ran out of device memory: `where` (which cache's run, or the timing), the error's first line, and
    `state`, torch's and the device's memory when it happened (_memory_state)."""

    def __init__(self, where: str, exc: BaseException, state: str):
        super().__init__(where)
        self.where, self.state = where, state
        self.message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError, or an error whose message says out of memory (_vidkv.CudaError from cudaMallocAsync,
    a RuntimeError from a CUDA library) or names a failed allocation (cuBLAS's CUBLAS_STATUS_ALLOC_FAILED)."""
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or "alloc_failed" in text


def _memory_state(torch) -> str:
    """torch's allocated and reserved bytes and the device's free and total ones, in GiB, as a phrase."""
    try:
        free, total = torch.cuda.mem_get_info()
        return (f"torch allocated {torch.cuda.memory_allocated() / 2**30:.1f} GiB and reserved "
                f"{torch.cuda.memory_reserved() / 2**30:.1f} GiB; the device had {free / 2**30:.1f} of "
                f"{total / 2**30:.1f} GiB free")
    except Exception as exc:  # the state is a courtesy: never let it hide the error being reported
        return f"memory state unavailable ({type(exc).__name__})"


def _guard_memory(torch, where: str, fn):
    """fn(), with an out-of-memory error raised as _OutOfMemory(where, ...) (other errors unchanged)."""
    try:
        return fn()
    except Exception as exc:
        if not _is_out_of_memory(exc):
            raise
        raise _OutOfMemory(where, exc, _memory_state(torch)) from None


def _shapes(tokens_list, batches, measure, release, state=lambda: "memory state not taken") -> tuple[list[str], list[str]]:
    """measure(tokens, batch) for every prompt length and batch, in that order: returns (the notes measure gave,
    printed under the table, and the shapes not measured). A shape that runs out of device memory (_OutOfMemory from
    a run or the timing, or any out-of-memory error of its setup or report: state() gives the memory then) prints one
    "not measured" row and a note saying where and with what memory, then release() (after the failed shape's
    objects are gone) and the next shape runs; other errors propagate."""
    notes, failed = [], []
    for tokens in tokens_list:
        for batch in batches:
            lost = False
            try:
                notes.append(measure(tokens, batch))
            except Exception as exc:
                if not isinstance(exc, _OutOfMemory):  # an out-of-memory error outside the guarded runs, or a bug
                    if not _is_out_of_memory(exc):
                        raise
                    exc = _OutOfMemory("the shape's setup or report (prompts, cache sizes)", exc, state())
                print(f"| {tokens} | {batch} | not measured: out of device memory (below) |" + " - |" * 9, flush=True)
                notes.append(f"{tokens} tokens, batch {batch}: NOT MEASURED, out of device memory in {exc.where} "
                             f"({exc.message}); then {exc.state}. Every cache of a shape is held at once for the "
                             f"timing: fewer --batches or --tokens, or --prefill-chunk (a lower prefill peak), fit.")
                failed.append(f"{tokens} tokens x batch {batch}")
                lost = True
            if lost:  # the failed shape's caches (held by the exception's frames until here) are gone now
                release()
    return notes, failed


def _release(torch) -> None:
    """Everything freed goes back to the device: Python's garbage (a failed run's caches, in reference cycles through
    its traceback), then torch's cached blocks and VidKV's pool."""
    import gc

    gc.collect()
    _return_freed(torch)


def _one_shape(torch, model, cfg, a, tokens, batch, g, mib, DynamicCache, VidKVCache) -> str:
    """The table's rows for one prompt length and batch (prompts drawn from g); returns the note printed under it."""
    prompt = torch.randint(0, cfg.vocab_size, (batch, tokens), generator=g).to(a.device)
    runs = [(None, "materialize")] + ([] if a.fused_only else [(p_, "materialize") for p_ in a.presets]) + (
        [(p_, "fused") for p_ in a.presets] if a.fused else [])

    def make(run):
        preset, attention = run
        return DynamicCache() if preset is None else VidKVCache({"preset": preset}, attention=attention)

    # Memory and teacher-forced agreement: each cache's own run, DynamicCache first (its greedy run is the reference);
    # the caches stay held for the timing.
    last, ref, caches, nxt = {}, None, {}, {}
    for run in runs:
        preset, attention = run
        _set_attention(model, attention)
        label = "DynamicCache" if preset is None else f"VidKVCache {preset}" + (" fused" if attention == "fused" else "")
        cache, alloc, peak, record, nxt[run] = _guard_memory(
            torch, f"{label}'s run (prefill and decode steps)",
            lambda run=run: _run(torch, model, a, tokens, lambda: make(run), prompt, ref))
        if preset is None:
            ref = record
            # DynamicCache holds prefill + steps tokens now (one more after --profile's step): scale its bytes
            # back to the prefill.
            held = tokens + a.steps + (1 if a.profile and a.device.startswith("cuda") else 0)
            last[run] = (_cache_bytes_dynamic(cache) * tokens / held, alloc, peak, record, None)
        else:
            last[run] = (sum(m["total_bytes"] for m in cache.memory().values()), alloc, peak, record,
                         cache.bits()["effective_bits"])
        caches[run] = cache
        model.set_attn_implementation("sdpa")
    # Speed: the caches side by side, their steps interleaved.
    times = _guard_memory(torch, "the interleaved timing", lambda: _interleaved(torch, model, a, runs, caches, nxt))
    del caches, cache
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()
    fp16_bytes, alloc, peak, _, _ = last[(None, "materialize")]
    margins = []
    ms_fp16 = statistics.median(times[(None, "materialize")])
    one_layer = fp16_bytes / cfg.num_hidden_layers
    gpu = a.device.startswith("cuda")
    mem = (lambda n: f"{n * mib:.1f}") if gpu else (lambda n: "-")  # device MiB and torch peak: GPU counters
    print(f"| {tokens} | {batch} | fp16 DynamicCache | {ms_fp16:.2f} | 1.00 | {fp16_bytes * mib:.1f} | - | {mem(alloc)} | "
          f"{mem(peak)} | 16.00 | - | - |", flush=True)
    for preset, attention in runs[1:]:
        held, alloc, peak, agreement, bits = last[(preset, attention)]
        ms = statistics.median(times[(preset, attention)])
        bound = bits / 16 * fp16_bytes + one_layer
        label = f"VidKVCache {preset}" + (" fused" if attention == "fused" else "")
        if agreement.margin is not None:
            twice = 2 * agreement.error * ref.largest  # twice the largest absolute logit error
            verdict = "a near-tie: within" if agreement.margin <= twice else "ABOVE (look into it)"
            margins.append(f"{label} {agreement.margin:.3g}, {verdict} twice its largest error {twice:.3g}")
        over = "!" if held > bound else ""
        print(f"| {tokens} | {batch} | {label} | {ms:.2f} | {ms / ms_fp16:.2f} | {held * mib:.1f}{over} | "
              f"{bound * mib:.1f} | {mem(alloc)} | {mem(peak)} | {bits:.2f} | "
              f"{agreement.agree}/{ref.predictions} | {agreement.error:.2e} |", flush=True)
    return (f"{tokens} tokens, batch {batch}: DynamicCache's logits at most {ref.largest:.3g} in magnitude; smallest "
            f"top-2 margin of DynamicCache's at the predictions where a cache disagrees: "
            f"{'; '.join(margins) if margins else 'none (every cache agrees everywhere)'}.")


def main(argv=None) -> int:
    a = _parse(sys.argv[1:] if argv is None else argv)
    from vidkv.models import ModelError, require_model_packages

    try:
        require_model_packages("vidkv bench --live")
    except ModelError as exc:
        raise SystemExit(f"vidkv bench --live: error: {exc}") from exc
    import torch
    from transformers import DynamicCache
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("vidkv bench --live: no CUDA device visible (run it on a GPU machine, or --device cpu with a "
                         "small --layers/--hidden/--tokens for a smoke run)")
    from vidkv.hf import VidKVCache

    if a.device.startswith("cuda"):
        chosen = {x.strip() for x in a.sdpa.split(",") if x.strip()}
        unknown = chosen - {"cudnn", "flash", "efficient", "math"}
        if unknown or not chosen:
            raise SystemExit(f"vidkv bench --live: --sdpa {a.sdpa!r}: choose from cudnn, flash, efficient, math")
        torch.backends.cuda.enable_cudnn_sdp("cudnn" in chosen)
        torch.backends.cuda.enable_flash_sdp("flash" in chosen)
        torch.backends.cuda.enable_mem_efficient_sdp("efficient" in chosen)
        torch.backends.cuda.enable_math_sdp("math" in chosen)
    model, cfg = _model(torch, a)
    dev = "GPU: " + torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
    chunk = (f"prefill in passes of {a.prefill_chunk} tokens per sequence (VidKVCache takes the later passes as appends "
             f"under its lifecycle's decode-time rules: see --help)" if a.prefill_chunk else "prefill in one pass")
    print(f"# vidkv bench --live: random-weight Qwen2 geometry, {cfg.num_hidden_layers} layers x "
          f"{cfg.num_key_value_heads} KV heads x 128 (GQA {cfg.num_attention_heads // cfg.num_key_value_heads}), "
          f"{a.dtype}, {dev}; {chunk}; memory and agreement from each cache's run (prefill + {a.steps} teacher-forced "
          f"decode steps, the earlier runs' caches held); ms/step: median of {a.rounds} x {a.steps} decode steps (one "
          f"token per sequence) per cache, all caches held at once and their steps interleaved one by one; sdpa "
          f"backends {a.sdpa}\n")
    print("| tokens | batch | cache | ms/step | vs fp16 | cache MiB | bound MiB | device MiB | torch peak MiB | eff. bits | agree | logit err |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    mib = 1 / 2**20
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    gpu = a.device.startswith("cuda")
    # per length and batch, the notes printed under the table (one table for every length)
    notes, failed = _shapes(a.tokens, a.batches,
                            lambda tokens, batch: _one_shape(torch, model, cfg, a, tokens, batch, g, mib, DynamicCache, VidKVCache),
                            (lambda: _release(torch)) if gpu else (lambda: None), lambda: _memory_state(torch))
    print("\n" + "\n".join(notes))
    print("\nms/step: one decode step of the whole batch (one new token per sequence); cache MiB: DynamicCache's K/V tensors / VidKVCache.memory() after prefill + steps (scaled to the prefill "
          "for DynamicCache; '!': above the bound, which is meant for long prompts); device MiB: device memory in use (cudaMemGetInfo) right after the prefill minus before it; torch peak "
          "MiB: max_memory_allocated() over prefill and decode minus before (not VidKVCache's packed blocks); bound: effective bits / 16 x fp16 cache + one "
          "layer's fp16 K/V (issue 12).")
    if failed:
        print(f"vidkv bench --live: not measured (out of device memory): {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
