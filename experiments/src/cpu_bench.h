// `vidkv bench --backend cpu`: throughput of trace replay on CPU, in GB/s of full-precision (fp16) K/V input,
// beside the machine's streaming copy bandwidth measured in the same process (one thread and all threads).
//
// Work measured per preset on synthetic layers of the requested shape (traces/synthetic_trace.h, generated in
// memory, not timed): encode = the preset's key and value quantizers on the whole [heads, tokens, dim] block of
// each layer; decode = the inverse; encode+metrics = what `vidkv run` does per layer (replay_layer through the
// preset's lifecycle, then the layer and per-head metrics through layer_metrics_all): "reconstruction" asks for the
// key and value errors only (the queries are not touched), "all" for every metric, the attention metrics over the
// recorded queries included; "all, scalar reference" the same with every metric through the scalar reference (one
// pass: it is slow), beside its ratio to "all". Layers are spread over `threads` workers; each figure is the best of
// `repeats` runs.
// Channel FFT tiers (core/cpu_fft_tier.h): for every preset whose kernel tiers depend on the FFT tier (the sign FFT
// presets, e.g. vidkv-k1.5-v1.58), encode and decode once more with each of `fft_tiers`, in the same process on the
// same layers, interleaved: each repeat runs every tier in turn (the order rotated by one each repeat, after one
// untimed pass of each tier: FFTW plans, page faults), so noise from other work on the machine falls on all of
// them; best of `repeats` per tier. Their encode+decode GB/s are compared with the avx512 tier's of the same run.
// Bytes counted: 2 * heads * tokens * dim * 2 (K and V in fp16) per layer.
// The copy bandwidth is memcpy of a buffer far larger than the caches, counting the bytes copied once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidkv/core/cpu_fft_tier.h"
#include "vidkv/core/cpu_implementation.h"
#include "vidkv/traces/synthetic_trace.h"

namespace vidkv {

SyntheticTraceSpec bench_trace_spec(const std::string& shape);

struct CpuBenchOptions {
  SyntheticTraceSpec spec = bench_trace_spec("");  // shape and seed of the synthetic trace
  int threads = 1;                         // workers over layers
  int layers = 0;                          // layers generated and timed; 0: max(2, threads), at most spec.layers
  int repeats = 3;                         // best of
  std::vector<std::string> presets = {"kivi-2", "vidkv-k1.5-v1.58"};
  CpuImplementation implementation = CpuImplementation::optimized;
  // Time measured: wall (default), or the process's CPU time (user + system, all threads): on a machine shared
  // with other work, CPU time leaves out the time this process waited for a core. With threads = 1 it is the
  // time the one thread ran. The one-thread copy bandwidth is then CPU time too; the all-threads one stays wall.
  bool cpu_time = false;
  // Channel FFT tiers timed against each other (above); empty: none. Optimised implementation only.
  std::vector<CpuFftTier> fft_tiers = all_cpu_fft_tiers();
};

// One preset's encode and decode with one channel FFT tier (timed interleaved with the other tiers).
struct CpuBenchFftRow {
  std::string preset;
  CpuFftTier fft_tier = CpuFftTier::avx512;
  std::string key_tier, value_tier;  // Quantizer::tier() names of what ran ("mixed_channel(uniform:avx512, ...)")
  double encode_gbps = 0, decode_gbps = 0, encode_decode_gbps = 0;
};

struct CpuBenchRow {
  std::string preset;
  double encode_gbps = 0, decode_gbps = 0, encode_decode_gbps = 0;
  double encode_reconstruction_metrics_gbps = 0;  // encode+metrics, key and value errors only
  double encode_metrics_gbps = 0;                 // encode+metrics, every metric (attention included)
  // encode+metrics, every metric through the scalar reference (layer_metrics_reference of each KV head: every
  // query head once, the work of the one-pass scalar path `vidkv run` had before issue 15); one pass, not best of.
  double encode_metrics_reference_gbps = 0;
};

struct CpuBenchResult {
  std::string shape;                       // spec.str()
  int threads = 1, layers = 0, hardware_threads = 1;
  bool cpu_time = false;                   // figures from process CPU time instead of wall time
  double copy_gbps_one_thread = 0, copy_gbps_all_threads = 0;
  std::int64_t layer_fp16_bytes = 0;       // K + V of one layer in fp16
  std::vector<CpuBenchRow> rows;
  std::vector<CpuBenchFftRow> fft_rows;    // presets in order, tiers in the order of CpuBenchOptions::fft_tiers
};

// The synthetic trace spec of the bench for "LxHxTxD" (16 frames of video tokens, fp16, seed 0); "" gives
// the default 28x4x8192x128 (LLaVA-OneVision-7B / Qwen2.5-VL-7B KV geometry).
SyntheticTraceSpec bench_trace_spec(const std::string& shape);

// Streaming memcpy bandwidth in GB/s (bytes copied / second) with `threads` threads, best of `repeats`; with
// cpu_time and one thread, per second of the process's CPU time.
double copy_bandwidth_gbps(int threads, int repeats = 3, bool cpu_time = false);

CpuBenchResult run_cpu_bench(const CpuBenchOptions& options);

// The result as a markdown table (GB/s with 3 significant digits) with the ratios encode+decode over encode+metrics
// (reconstruction) and encode+metrics (all) over its scalar reference, and ratios ours/copy(1 thread), ours/copy(all) for encode+decode; `torch_gbps`
// (same order as rows, <= 0: not measured) adds the PyTorch column and ours/torch. Then, when fft_rows is not
// empty, a table of the FFT tiers with each tier's encode+decode over the avx512 tier's of the same preset, and
// the line "FFTW batched / AVX-512 ..." with that ratio for each preset.
std::string cpu_bench_markdown(const CpuBenchResult& r, const std::vector<double>& torch_gbps = {});

}  // namespace vidkv
