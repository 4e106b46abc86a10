// The pieces both metric paths share (metrics.cpp, the per-call reference; layer_metrics_all.cpp, the one-pass
// path): reconstruction-error sums, their conversion to metrics, the softmax and the top-k set. One definition,
// so the two paths stay bit-identical by construction.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "vidkv/experiments/src/metrics.h"

namespace vidkv::metric_kernels {

// Sums of x^2, y^2, (x - y)^2 and x*y in double, in element order.
struct ErrorSums {
  double ref2 = 0, hat2 = 0, diff2 = 0, dot = 0;
  std::int64_t n = 0;
  void add(const float* x, const float* y, std::int64_t count) {
    for (std::int64_t i = 0; i < count; ++i) {
      const double a = x[i], b = y[i];
      ref2 += a * a;
      hat2 += b * b;
      diff2 += (a - b) * (a - b);
      dot += a * b;
    }
    n += count;
  }
};

// prefix_rel_error, _mse, _snr_db, _cosine (definitions in metrics.h).
inline void put_errors(MetricValues& m, const std::string& prefix, const ErrorSums& s) {
  m[prefix + "_rel_error"] = s.ref2 > 0 ? std::sqrt(s.diff2 / s.ref2) : (s.diff2 > 0 ? INFINITY : 0.0);
  m[prefix + "_mse"] = s.n ? s.diff2 / static_cast<double>(s.n) : 0.0;
  // 999 dB stands for an exact reconstruction (infinite SNR) so CSV stays numeric.
  m[prefix + "_snr_db"] = s.diff2 > 0 ? (s.ref2 > 0 ? 10.0 * std::log10(s.ref2 / s.diff2) : -INFINITY) : 999.0;
  m[prefix + "_cosine"] = (s.ref2 > 0 && s.hat2 > 0) ? s.dot / std::sqrt(s.ref2 * s.hat2) : (s.ref2 == s.hat2 ? 1.0 : 0.0);
}

// p = softmax(s), max-subtracted, in index order.
inline void softmax(const std::vector<double>& s, std::vector<double>& p) {
  const double mx = *std::max_element(s.begin(), s.end());
  p.resize(s.size());
  double z = 0;
  for (std::size_t j = 0; j < s.size(); ++j) z += (p[j] = std::exp(s[j] - mx));
  for (auto& v : p) v /= z;
}

// The k largest entries of p (ties to the lower index), as ascending indices in idx. The comparator is a strict
// total order, so the selected set does not depend on the selection algorithm.
inline void top_k(const std::vector<double>& p, std::size_t k, std::vector<std::size_t>& idx) {
  idx.resize(p.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto before = [&](std::size_t a, std::size_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); };
  if (k < idx.size()) std::nth_element(idx.begin(), idx.begin() + static_cast<long>(k), idx.end(), before);
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
}

}  // namespace vidkv::metric_kernels
