// semantic_embedding's score of one candidate, shared by the CUDA kernel (one thread per candidate) and the [cpu]
// test against SemanticEmbeddingProtector::score(): the reference's double operations in its order (queries in
// trace order, dimensions in order, each product and sum rounded once: column_scores::add_rn / mul_rn keep nvcc
// from fusing them into FMAs), so the scores are equal bit for bit and top-k picks the same tokens.
// C++17, no CUDA headers.
#pragma once

#include <cstdint>

#include "vidkv/core/host_device.h"
#include "vidkv/quantization/column_scores.h"

namespace vidkv::semantic_embedding_score {

// mean over the `queries` rows q of <e, q> (queries: [queries, hidden] row-major); e(d) gives the candidate's
// embedding value d.
template <class E>
VIDKV_HOST_DEVICE double mean_dot(const E& e, const float* queries, std::int64_t query_count, std::int64_t hidden) {
  double sum = 0;
  for (std::int64_t j = 0; j < query_count; ++j) {
    const float* q = queries + j * hidden;
    double dot = 0;
    for (std::int64_t d = 0; d < hidden; ++d)
      dot = column_scores::add_rn(dot, column_scores::mul_rn(static_cast<double>(e(d)), static_cast<double>(q[d])));
    sum = column_scores::add_rn(sum, dot);
  }
  return sum / static_cast<double>(query_count);
}

}  // namespace vidkv::semantic_embedding_score
