// What travels with every block a plugin sees: which layer, what each token is (modality, position, frame, patch),
// and optional side data (input embeddings, recorded query states, the layer's full-precision keys) that token
// protectors may use. Quantizers that do not care ignore it; a bare slab gets a default context.
#pragma once

#include <cstdint>
#include <vector>

#include "vidkv/core/tensor_view.h"

namespace vidkv {

// Token modality codes as stored in traces (/tokens/modality).
enum class Modality : std::uint8_t { system_text = 0, visual = 1, query_text = 2, generated = 3 };
const char* modality_name(Modality m);

// Per-token metadata of a whole trace or live prompt: T entries each; embeddings optional.
struct TraceTokens {
  std::vector<Modality> modality;
  std::vector<std::int32_t> position;
  std::vector<std::int32_t> frame;      // -1 when not visual
  std::vector<std::int16_t> patch_row;  // -1 when not visual
  std::vector<std::int16_t> patch_col;  // -1 when not visual
  std::int64_t hidden = 0;              // embedding width; 0 when embeddings were not recorded
  std::vector<float> embeddings;        // [T, hidden] LLM input embeddings, or empty

  std::int64_t size() const { return static_cast<std::int64_t>(modality.size()); }
  // T tokens of one modality with positions 0..T-1, frame/patch -1 (for bare slabs and tests).
  static TraceTokens uniform(std::int64_t tokens, Modality m = Modality::system_text);
};

// Recorded query states of one layer: [heads, count, dim] for the trace tokens `token_index`.
struct LayerQueries {
  std::int64_t heads = 0;
  std::int64_t count = 0;
  std::int64_t dim = 0;
  std::vector<float> data;
  std::vector<std::int32_t> token_index;  // trace token index of each recorded query
};

// The full-precision keys of the current layer, [heads, tokens, dim] fp32, indexed by *trace* token index. `device`
// says where `data` lives: a LayerCache on cuda (cache_lifecycle.h) exposes its keys in device memory.
struct LayerKeys {
  const float* data = nullptr;
  std::int64_t heads = 0;
  std::int64_t tokens = 0;
  std::int64_t dim = 0;
  Device device = Device::cpu;
};

struct TokenContext {
  int layer = 0;
  const TraceTokens* tokens = nullptr;   // null: every token is system text at position = local index
  std::vector<std::int32_t> index;       // local token i is trace token index[i]; empty: trace token offset + i
  std::int32_t offset = 0;               // with an empty index: local token i is trace token offset + i
  const LayerQueries* queries = nullptr; // optional, for semantic_attention
  LayerKeys keys;                        // optional, for semantic_attention
  std::uint64_t seed = 0;                // base seed of the run (random protectors mix in the layer)

  // Trace token index of local token i.
  std::int32_t trace_index(std::int64_t i) const {
    return index.empty() ? offset + static_cast<std::int32_t>(i) : index[static_cast<std::size_t>(i)];
  }
  Modality modality(std::int64_t i) const;
  std::int32_t position(std::int64_t i) const;
  // A context for the local tokens `local` (ascending), keeping side data and the mapping to trace tokens.
  TokenContext subset(const std::vector<std::int32_t>& local) const;
  // Context for local tokens [begin, end) (no per-token vector when this context's tokens are contiguous).
  TokenContext range(std::int64_t begin, std::int64_t end) const;
};

}  // namespace vidkv
