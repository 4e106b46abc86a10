// Cache lifecycles (algorithms.md section 5): which tokens of a layer are quantized when, and which stay in full
// precision. One implementation serves trace replay (replay_layer) and the live Hugging Face hook (LayerCache).
//
//  release: prefill quantizes [0, N - N mod G), keeps N mod G tokens full precision; decode appends to that
//           residual; when it reaches R, everything is dequantized, concatenated and re-quantized from scratch.
//  paper:   same prefill; when the residual reaches R, only the residual block is quantized and appended.
//  kivi:    keys quantize whole R-blocks (N - N mod R at prefill), append-only; values keep a FIFO window of the
//           last R tokens in full precision and quantize each token leaving it (the value quantizer should be
//           per-token for KIVI).
#pragma once

#include <cstdint>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/packed_layout.h"
#include "vidkv/core/params.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

enum class LifecycleType { release, paper, kivi };

struct LifecycleParams {
  LifecycleType type = LifecycleType::paper;
  int group = 32;             // G: prefill quantizes a multiple of G tokens
  int residual = 128;         // R: full-precision residual length that triggers quantization
  int prefill_tokens = -1;    // replay: tokens treated as prefill; -1 = the whole trace (the rest are decode steps)
  DType residual_dtype = DType::f16;  // storage of full-precision tokens (counted in effective bits)

  template <class B>
  static void bind(B& b) {
    b.choice("type", &LifecycleParams::type,
             std::vector<std::pair<std::string, LifecycleType>>{{"release", LifecycleType::release}, {"paper", LifecycleType::paper}, {"kivi", LifecycleType::kivi}},
             "release: re-quantize all at R; paper: append quantized R-blocks (Algorithm 1); kivi: R-blocks for K, FIFO window for V");
    b.integer("group", &LifecycleParams::group, 1, 1 << 16, "tokens", "G: prefill quantizes N - N mod G tokens");
    b.integer("residual", &LifecycleParams::residual, 1, 1 << 20, "tokens", "R: full-precision residual length");
    b.integer("prefill_tokens", &LifecycleParams::prefill_tokens, -1, 1 << 30, "tokens",
              "tokens replayed as prefill; the rest are appended one decode step at a time; -1: all");
    b.choice("residual_dtype", &LifecycleParams::residual_dtype,
             std::vector<std::pair<std::string, DType>>{{"fp16", DType::f16}, {"bf16", DType::bf16}, {"fp32", DType::f32}},
             "storage type of full-precision residual tokens");
  }
};

// The cache of one layer (all KV heads) under a codec and lifecycle.
class LayerCache {
 public:
  LayerCache(const KvCodec& codec, const LifecycleParams& params, std::int64_t heads, std::int64_t channels,
             TokenContext ctx);

  // Appends `tokens` tokens: key and value are [heads, tokens, channels] fp32. The first call is the prefill.
  void append(const float* key, const float* value, std::int64_t tokens);
  // Current cache contents as the model would read them: [heads, tokens(), channels] fp32 (dequantized blocks
  // followed by full-precision tokens, rounded to residual_dtype).
  void materialize(std::vector<float>& key, std::vector<float>& value) const;
  std::int64_t tokens() const { return tokens_; }
  // Everything stored right now: packed blocks and full-precision residual.
  PackedLayout key_layout() const;
  PackedLayout value_layout() const;
  // Times the whole cache was re-quantized (release lifecycle).
  int requantizations() const { return requantizations_; }

 private:
  struct Block {
    std::int64_t begin = 0, end = 0;  // token range
    std::vector<std::uint8_t> bytes;
    PackedLayout layout;
  };
  void quantize_key_range(std::int64_t begin, std::int64_t end);
  void quantize_value_range(std::int64_t begin, std::int64_t end);
  void maybe_quantize(bool prefill);

  const KvCodec& codec_;
  LifecycleParams params_;
  std::int64_t heads_, channels_;
  TokenContext ctx_;
  std::int64_t tokens_ = 0;
  std::vector<float> key_full_, value_full_;  // [heads, capacity, channels] exact inputs of every token so far
  std::int64_t key_quantized_ = 0, value_quantized_ = 0;  // tokens [0, n) live in blocks
  std::vector<Block> key_blocks_, value_blocks_;
  int requantizations_ = 0;
};

// Replays one layer of a trace: the first prefill_tokens tokens as prefill, the rest as decode steps.
struct ReplayedLayer {
  std::vector<float> key, value;  // reconstruction, [heads, tokens, channels]
  PackedLayout key_layout, value_layout;
  int requantizations = 0;
};
ReplayedLayer replay_layer(const KvCodec& codec, const LifecycleParams& params, const float* key, const float* value,
                           const BlockShape& shape, const TokenContext& ctx);

}  // namespace vidkv
