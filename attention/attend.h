// Dense single-query-step attention in double (Eigen), the arithmetic of the decode-attention reference and of
// dequantize-then-attend: out = softmax(q K^T / sqrt(D)) V, softmax max-subtracted.
#pragma once

#include <cstdint>
#include <vector>

namespace vidkv {

// q: [rows, D], k and v: [tokens, D], row-major double (host); returns [rows, D]. tokens >= 1.
std::vector<double> attend(const double* q, std::int64_t rows, const double* k, const double* v, std::int64_t tokens,
                           std::int64_t channels);

}  // namespace vidkv
