// `vidkv bench --attention`: latency of fused decode attention (attention/decode_attention.h) on the GPU, beside
// PyTorch's fp16 scaled_dot_product_attention on the same shapes and GPU (experiments/python/vidkv/bench_attention.py,
// run by the command as a separate python process) and the device-to-device copy bandwidth measured in the same run.
//
// Work per preset, batch B and token count T: B sequences, each a cuda LayerCache of the preset's codec and
// lifecycle holding T tokens of synthetic [kv_heads, T, head_dim] keys and values (N(0, 1), with 4 outlier key
// channels per head scaled by 8 so the range selector has something to pick, the same values for every sequence,
// separate caches) appended as one prefill; queries [B, kv_heads * query_heads_per_kv, head_dim] fp16, N(0, 1)
// ([B, N, kv_heads * query_heads_per_kv, head_dim] with N = query_tokens > 1: the caches' last N tokens, each
// attending causally, decode_attention.h; cache_bytes then counts the cache once per query token, as the kernels
// read it).
// Timed: DecodeAttention::run (the tables built once outside the timing, as a model builds them once per step and
// layer), CUDA events, `warmup` untimed calls then the median of `repeats`. Where the tensor-core kernel takes the
// fast tiles, the same call with the fast (CUDA-core) kernel is timed too, in the same run.
// Bytes read: the caches' packed bytes + residual bytes (DecodeAttention::cache_bytes: the residual at its storage
// dtype, though the kernels read the cache's fp32 exact inputs and round them, twice the bytes for those <= 128
// tokens per side) + the queries; the fraction of
// the copy bandwidth = (bytes / latency) / copy GB/s, copy = cudaMemcpyAsync device to device of 1 GiB, bytes copied
// counted once. fp16 bytes: 2 * B * kv_heads * T * head_dim * 2, what SDPA over an fp16 cache reads.
// In a build without CUDA, run_attention_bench throws NotSupportedError.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vidkv {

struct AttentionBenchOptions {
  std::vector<std::int64_t> tokens = {8192, 16384, 32768, 65536, 131072};
  std::vector<std::int64_t> batches = {1, 8};
  int kv_heads = 4, query_heads_per_kv = 7, head_dim = 128;
  // Query tokens per sequence (DecodeAttention's query_tokens): the caches' last N tokens, attending causally;
  // queries [B, N, kv_heads * query_heads_per_kv, head_dim]. 1: [B, kv_heads * query_heads_per_kv, head_dim].
  int query_tokens = 1;
  int warmup = 3, repeats = 20;
  // fp16: the same kernels on an fp16 cache (identity), the kernels' own efficiency against SDPA at equal bytes.
  std::vector<std::string> presets = {"fp16", "kivi-2", "vidkv-k1.5-v1.58"};
};

struct AttentionBenchRow {
  std::string preset;
  std::int64_t batch = 0, tokens = 0;
  double ms = 0;                 // median latency of one decode-attention call
  double cache_bytes = 0;        // the cache's bytes per query token (read once per query head group per call)
  double gbps = 0;               // (cache + query bytes) / latency
  int splits = 0;
  bool tensor_cores = false;     // the fast tiles ran on the tensor-core kernel (DecodeAttention::tensor_cores)
  bool fragment = false;         // the fast tiles ran on the fragment kernel (DecodeAttention::fragment)
  double cuda_core_ms = 0;       // tensor_cores or fragment: the same call with FastKernel::cuda_cores, same run; else 0
  bool general_only = false;     // no fast tile (fft: complex keys, mixed_token values): the general kernel ran alone
  std::string skipped;           // why the preset did not run, else ""
};

struct AttentionBenchResult {
  std::string device;
  double copy_gbps = 0;
  int kv_heads = 0, query_heads_per_kv = 0, head_dim = 0, repeats = 0, query_tokens = 1;
  std::vector<AttentionBenchRow> rows;  // batch outer, tokens, then presets
};

AttentionBenchResult run_attention_bench(const AttentionBenchOptions& options);

// PyTorch's fp16 SDPA on one (batch, tokens): the fastest variant's median ms and its name
// (experiments/python/vidkv/bench_attention.py: "gqa", "gqa cudnn", "rows", ...).
struct TorchSdpaTime {
  double ms = -1;
  std::string variant;
};

// The last JSON object line of bench_attention.py's output: {"torch_ms": [...], "torch_variant": [...]} (variant
// names optional). Empty, with *why set, when there is none, it does not parse, it carries "error" (the script's
// reason: no torch, no CUDA device) or "torch_ms" is not an array of numbers.
std::vector<TorchSdpaTime> parse_torch_sdpa_json(const std::string& text, std::string* why);

// Markdown table. torch: PyTorch fp16 SDPA per (batch, tokens) in the order of `options` (batch outer), empty or
// ms <= 0 entries: not measured; adds the fp16 SDPA column ("ms (variant)") and the speed-up torch / ours.
std::string attention_bench_markdown(const AttentionBenchResult& r, const AttentionBenchOptions& options,
                                     const std::vector<TorchSdpaTime>& torch);

}  // namespace vidkv
