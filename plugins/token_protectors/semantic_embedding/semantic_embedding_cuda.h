// semantic_embedding's scores on CUDA (semantic_embedding.cu), behind SemanticEmbeddingProtector::score_cuda.
// Host-only declarations, no CUDA headers.
//
// candidates_t: device [hidden, n] (the candidates' embeddings transposed, so that at each dimension consecutive
// threads read consecutive candidates: coalesced); queries: device [query_count, hidden]; scores: device n doubles.
// One thread per candidate runs semantic_embedding_score::mean_dot in the reference's order. Asynchronous on stream.
#pragma once

#include <cstdint>

namespace vidkv::semantic_embedding_cuda {

void score(const float* candidates_t, std::int64_t n, const float* queries, std::int64_t query_count, std::int64_t hidden,
           double* scores, void* stream);

}  // namespace vidkv::semantic_embedding_cuda
