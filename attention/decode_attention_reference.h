// The CPU reference of fused decode attention (decode_attention.h): the oracle the CUDA kernels are tested against.
// For KV head h of one layer cache: every packed key and value block is decoded by its side's quantizer (the
// plugin's decode on the host bytes; a cuda cache's bytes are copied to the host first), the full-precision
// residual tokens are rounded to the residual storage dtype (as LayerCache::materialize), and attend() computes
// softmax(q K^T / sqrt(D)) V in double. With a codec built from builtin_registry(CpuImplementation::reference) the
// decode is each plugin's scalar reference.
#pragma once

#include <cstdint>
#include <vector>

#include "vidkv/core/cache_lifecycle.h"

namespace vidkv {

// K and V of KV head h as the model reads them: [tokens(), D] each, double (exact copies of the fp32 values).
void decoded_head(const LayerCache& cache, std::int64_t h, std::vector<double>& key, std::vector<double>& value);

// queries: [rows, D] fp32 host (the query heads of KV head h); returns [rows, D]. tokens: the keys and values attended
// to, the cache's first `tokens` (a query token's causal limit, decode_attention.h); -1 or cache.tokens(): all of
// them. ShapeError for a count outside [1, cache.tokens()].
std::vector<double> reference_decode_attention(const LayerCache& cache, std::int64_t h, const float* queries, std::int64_t rows,
                                               std::int64_t tokens = -1);

}  // namespace vidkv
