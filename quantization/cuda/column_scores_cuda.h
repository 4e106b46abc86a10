// The channel selectors' scores on CUDA (column_scores.cu), behind ChannelSelector::score_cuda of range, variance
// and outlier. Host-only declarations, no CUDA headers.
//
// in: device [heads, tokens, channels] values of `dtype` (fp32, fp16 or bf16, converted exactly to fp32 on load);
// scopes of `heads_per_scope` consecutive heads (all heads for scope layer, 1 for scope head), heads divisible by it;
// scores: device memory, heads / heads_per_scope rows of `channels` doubles. Asynchronous on `stream`. Each score is
// equal bit for bit to the selector's reference score() (column_scores.h says how).
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"

namespace vidkv::column_scores_cuda {

// range: max - min per channel. A parallel reduction over runs of consecutive rows, merged in row order.
void range(const void* in, DType dtype, const BlockShape& shape, std::int64_t heads_per_scope, double* scores, void* stream);
// variance: one thread per score, the reference's double sums in its order (column_scores.h).
void variance(const void* in, DType dtype, const BlockShape& shape, std::int64_t heads_per_scope, double* scores,
              void* stream);
// outlier: one thread per score, as variance.
void outlier(const void* in, DType dtype, const BlockShape& shape, std::int64_t heads_per_scope, double multiplier,
             bool absolute, double* scores, void* stream);

}  // namespace vidkv::column_scores_cuda
