// semantic_embedding's scores on CUDA (semantic_embedding_cuda.h).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/token_protectors/semantic_embedding/semantic_embedding_cuda.h"
#include "vidkv/plugins/token_protectors/semantic_embedding/semantic_embedding_score.h"

namespace vidkv::semantic_embedding_cuda {

namespace {

constexpr int kThreads = 128;

// Value d of one candidate's embedding row.
struct Row {
  const float* data;
  __device__ float operator()(std::int64_t d) const { return data[d]; }
};

__global__ void mean_dots(const float* candidates, std::int64_t n, const float* queries, std::int64_t query_count,
                          std::int64_t hidden, double* scores) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  scores[i] = semantic_embedding_score::mean_dot(Row{candidates + i * hidden}, queries, query_count, hidden);
}

}  // namespace

void score(const float* candidates, std::int64_t n, const float* queries, std::int64_t query_count, std::int64_t hidden,
           double* scores, void* stream) {
  if (n == 0) return;
  mean_dots<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      candidates, n, queries, query_count, hidden, scores);
  check_launch("semantic_embedding scores");
}

}  // namespace vidkv::semantic_embedding_cuda
