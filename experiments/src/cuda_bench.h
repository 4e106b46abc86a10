// `vidkv bench --backend cuda`: encode and decode throughput of the presets' codecs on the GPU, in GB/s of fp16
// K/V input, beside the device-to-device copy bandwidth measured in the same run (and, through the embedded Python,
// beside a PyTorch implementation of the same math: experiments/python/vidkv/bench_cuda.py).
//
// Work per preset and token count T: `layers` layers of [heads, T, head_dim] fp16 keys and values (synthetic,
// traces/synthetic_trace.h: `distinct_layers` layers generated on the host, uploaded once per shape and copied on
// the device into `layers` separate buffers, so one pass over the layers reads far more than the L2 cache holds).
// encode = the preset's key and value quantizers' encode_view on every layer (fp16 device view -> packed device
// bytes); decode = decode_view of those bytes into fp16 device buffers. Each figure is timed with CUDA events
// around one pass over all layers, after `warmup` passes, and is the median of `repeats` passes.
// replay = what `vidkv run` with backend: cuda does per layer besides the metrics: replay_layer through the
// preset's lifecycle on a device LayerCache (the whole layer as the prefill; core/cache_lifecycle.h) and the
// materialized cache written to fp16 device buffers.
// Bytes counted: 2 (K and V) * heads * T * head_dim * 2 (fp16) per layer, as the CPU bench (cpu_bench.h).
// Copy bandwidth: cudaMemcpyAsync device to device of a 1 GiB buffer (far larger than L2), counting the bytes
// copied once, median of `repeats`. Ratios: encode+decode throughput (bytes / (t_encode + t_decode)) / copy.
// A preset whose codec has a plugin without CUDA gets a row that says why (Quantizer::supports).
// In a build without CUDA, run_cuda_bench throws NotSupportedError.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vidkv {

struct CudaBenchOptions {
  std::vector<std::int64_t> tokens = {8192, 32768, 65536};
  int layers = 28;
  int heads = 4;
  int head_dim = 128;
  int distinct_layers = 4;  // generated on the host (the rest are device copies of them)
  int warmup = 3;
  int repeats = 10;         // median of
  std::vector<std::string> presets = {"kivi-2", "vidkv-k1.5-v1.58"};
};

struct CudaBenchRow {
  std::string preset;
  std::int64_t tokens = 0;
  double encode_gbps = 0, decode_gbps = 0, encode_decode_gbps = 0;
  double replay_gbps = 0;  // the preset's lifecycle on a device LayerCache + materialize (vidkv run without metrics)
  std::string tiers;    // "key tier / value tier"
  std::string skipped;  // why the preset did not run (no CUDA implementation), else ""
};

struct CudaBenchResult {
  std::string device;      // cuda_device_description(0)
  double copy_gbps = 0;    // device-to-device copy, bytes copied once per second
  int layers = 0, heads = 0, head_dim = 0, repeats = 0;
  std::vector<CudaBenchRow> rows;  // token counts x presets (token count outer)
};

CudaBenchResult run_cuda_bench(const CudaBenchOptions& options);

// Device-to-device copy bandwidth in GB/s (cudaMemcpyAsync of `bytes`, median of `repeats`).
double device_copy_bandwidth_gbps(std::size_t bytes, int repeats);

// The result as a markdown table: encode, decode, encode+decode GB/s, encode+decode / copy; `torch_gbps` (same
// order as rows, <= 0: not measured) adds PyTorch's encode+decode GB/s and ours / torch.
std::string cuda_bench_markdown(const CudaBenchResult& r, const std::vector<double>& torch_gbps = {});

}  // namespace vidkv
