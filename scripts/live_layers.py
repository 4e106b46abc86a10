"""The per-layer work of a live decode step without the model, shared by scripts/live_fused_host_time.py and
scripts/live_host_waits.py: 28 layers of the `vidkv bench --live` geometry (4 KV heads x 128, GQA 7, fp16), a
prefill of `tokens` random tokens, one new token per step, and the two attention calls a layer makes after its
cache update: transformers' sdpa_attention_forward (DynamicCache, the materialising VidKVCache) and the
"vidkv_fused" function (VidKVCache(attention="fused")).
"""
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from vidkv import fused_attention

L, H, QH, D = 28, 4, 28, 128  # layers, KV heads, query heads, head_dim

LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")  # torch.profiler names


def runtime_calls(prof) -> list:
    """The CUDA runtime and driver calls of a torch.profiler run other than kernel launches, as sorted (name, count):
    synchronisations, event records, stream waits, copies, allocations. On a host-bound decode step each such call
    per layer costs the step far more than a launch does (docs/performance.md section 8: an event record + stream wait
    pair, or a pinned copy with its event, per layer made the model's own calls 4-5 ms per step slower), whether or
    not it blocks. Kernel names (which may start with "cu") are told apart by their "::" or "(" or lower-case third
    letter."""
    def runtime(name: str) -> bool:
        return (name.startswith("cuda") or (name.startswith("cu") and name[2:3].isupper())) and \
            "::" not in name and "(" not in name and name not in LAUNCHES
    return sorted((e.key, e.count) for e in prof.key_averages() if runtime(e.key))


class _Module:  # what sdpa_attention_forward reads from the attention module
    num_key_value_groups = QH // H
    is_causal = True
    training = False


class LiveLayers:
    """prefill: two (key, value) pairs [1, H, tokens, D] used by alternate layers; k1, v1 [1, H, 1, D]: a step's new
    token; q1 [1, QH, 1, D]: its query. fused(key, value) and dense(key, value) attend q1 to what an update returned."""

    def __init__(self, tokens: int, device: str, seed: int = 0):
        torch.backends.cuda.enable_cudnn_sdp(False)  # as `vidkv bench --live` (its --sdpa default): flash, efficient, math
        torch.manual_seed(seed)
        self.tokens, self.device = tokens, device
        self.prefill = [(torch.randn(1, H, tokens, D, dtype=torch.float16, device=device),
                         torch.randn(1, H, tokens, D, dtype=torch.float16, device=device)) for _ in range(2)]
        self.k1 = torch.randn(1, H, 1, D, dtype=torch.float16, device=device)
        self.v1 = torch.randn_like(self.k1)
        self.q1 = torch.randn(1, QH, 1, D, dtype=torch.float16, device=device)
        self.module = _Module()
        fused_attention.register()

    def fused(self, key, value):
        return fused_attention.fused_attention_forward(self.module, self.q1, key, value, None, scaling=D ** -0.5)

    def dense(self, key, value):
        return sdpa_attention_forward(self.module, self.q1, key, value, None, scaling=D ** -0.5)

    def fill(self, cache, attend) -> None:
        """The prefill of every layer (with the fused function, its prefill attention call, which goes to SDPA)."""
        for layer in range(L):
            k, v = self.prefill[layer % 2]
            kk, vv = cache.update(k, v, layer)
            if attend == self.fused:
                attend(kk[:, :, :8], vv[:, :, :8])
        if self.device == "cuda":
            torch.cuda.synchronize()

    def step(self, cache, attend) -> None:
        """One decode step: every layer's update with the new token, then its attention call."""
        for layer in range(L):
            kk, vv = cache.update(self.k1, self.v1, layer)
            attend(kk, vv)
