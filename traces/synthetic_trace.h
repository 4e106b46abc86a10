// Deterministic synthetic traces with the structure the VidKV paper describes (Tao et al. 2025, sec. 3):
//  - keys: a few high-magnitude outlier channels (large mean offset and range; head_dim/32 of them, in
//    low-frequency RoPE pairs as in real models), the rest near zero, all rotated RoPE-style in pairs
//    (c, c + head_dim/2) by position * 10000^(-2c/head_dim) ("post" RoPE keys);
//  - values: per-channel scales drawn log-normally, so the per-channel range varies by about e^{+-1.4};
//  - tokens: system text, then a visual span laid out frame by frame and row-major over a rows x cols patch
//    grid, then query text, then (optionally) generated tokens;
//  - relevance: a rectangle of patches in a run of frames is "relevant" to the query: its input embeddings share a
//    topic direction with the query-text embeddings (dot product ~2.25 versus ~0 for the rest) and its keys carry
//    a per-head direction that the recorded query states (/queries, one per query-text token) point along.
// Every number comes from std::mt19937_64 streams seeded by (seed, purpose, layer, head) and a hand-written
// Box-Muller sampler, so the same spec gives the same bytes on every standard library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/core/token_context.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_writer.h"

namespace vidkv {

struct SyntheticTraceSpec {
  int layers = 8;
  int kv_heads = 2;
  std::int64_t tokens = 1024;  // T = system + frames * patch_rows * patch_cols + query + generated
  int head_dim = 64;
  int query_heads = 0;          // 0: 7 * kv_heads (the GQA ratio of Qwen2.5-VL-7B and LLaVA-OneVision-7B)
  std::int64_t hidden = 0;      // embedding width; 0: query_heads * head_dim
  int frames = 8;               // 0: a text-only trace
  int patch_rows = 0;           // 0 (with patch_cols 0): the largest near-square grid that fits the visual budget
  int patch_cols = 0;
  std::int64_t system_tokens = -1;    // -1: clamp(T / 32, 1, 64) plus whatever the grid leaves over
  std::int64_t query_tokens = -1;     // -1: clamp(T / 64, 1, 32)
  std::int64_t generated_tokens = 0;
  int outlier_channels = -1;          // -1: max(1, head_dim / 32) per KV head (4 of 128)
  std::uint64_t seed = 0;
  DType dtype = DType::f16;

  // Fills every derived field (-1 / 0 above) and checks the result; ConfigError naming the field otherwise.
  SyntheticTraceSpec resolved() const;
  // "28x4x8192x128 fp16, 16 frames of 22x23 patches, 64 system + 32 query + 0 generated tokens, seed 0"
  std::string str() const;
};

// Parses "LAYERSxHEADSxTOKENSxDIM" (e.g. "28x4x8192x128") into the first four fields of `spec`.
void parse_synthetic_shape(const std::string& text, SyntheticTraceSpec& spec);

class SyntheticTrace {
 public:
  explicit SyntheticTrace(const SyntheticTraceSpec& spec);  // resolves the spec

  const SyntheticTraceSpec& spec() const { return spec_; }
  // Token metadata and input embeddings [T, hidden] (rounded to fp16 unless the dtype is fp32, as stored).
  TraceTokens tokens() const;
  // The query-text token indices whose query states each layer records (empty without query tokens).
  std::vector<std::int32_t> query_positions() const;
  // Keys/values [kv_heads, T, head_dim] and queries [query_heads, Q, head_dim] of one layer, rounded to the dtype
  // (exactly what a reader returns for the written trace).
  LayerData layer(int layer) const;
  // Writes the trace (one layer in memory at a time) through TraceWriter: atomic, no partial file on error.
  void write(const std::string& path, const TraceWriterOptions& options = {}) const;

 private:
  SyntheticTraceSpec spec_;
  std::int64_t visual_begin_ = 0;  // first visual token
  std::vector<bool> relevant_;     // per token: part of the query-relevant visual region
};

}  // namespace vidkv
