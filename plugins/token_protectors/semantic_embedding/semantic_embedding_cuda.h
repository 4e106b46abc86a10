// semantic_embedding's scores on CUDA (semantic_embedding.cu), behind SemanticEmbeddingProtector::score_cuda.
// Host-only declarations, no CUDA headers.
//
// candidates: device [n, hidden] (the candidates' embeddings); queries: device [query_count, hidden]; scores: device
// n doubles. One thread per candidate runs semantic_embedding_score::mean_dot in the reference's order, reading its
// own row once per query (from L1/L2: n * query_count * hidden * 4 bytes of cache traffic) and the query rows in
// step with the other threads (broadcast loads). Asynchronous on stream.
#pragma once

#include <cstdint>

namespace vidkv::semantic_embedding_cuda {

void score(const float* candidates, std::int64_t n, const float* queries, std::int64_t query_count, std::int64_t hidden,
           double* scores, void* stream);

}  // namespace vidkv::semantic_embedding_cuda
