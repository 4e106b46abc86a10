// The pieces both metric paths share (metrics.cpp, the scalar reference; layer_metrics_all.cpp, the optimised
// path): reconstruction-error sums, their conversion to metrics, the check of the recorded queries, the softmax and
// the top-k set of the reference. One definition of each, so the two paths name and finish their metrics alike.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "vidkv/core/error.h"
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
// A reconstruction holding inf or NaN gives NaN for all four (never 999 "exact": NaN > 0 is false); the runner
// refuses such a reconstruction before it reaches a table (experiment_runner.cpp).
inline void put_errors(MetricValues& m, const std::string& prefix, const ErrorSums& s) {
  if (!std::isfinite(s.diff2) || !std::isfinite(s.hat2)) {
    for (const char* name : {"_rel_error", "_mse", "_snr_db", "_cosine"}) m[prefix + name] = NAN;
    return;
  }
  m[prefix + "_rel_error"] = s.ref2 > 0 ? std::sqrt(s.diff2 / s.ref2) : (s.diff2 > 0 ? INFINITY : 0.0);
  m[prefix + "_mse"] = s.n ? s.diff2 / static_cast<double>(s.n) : 0.0;
  // 999 dB stands for an exact reconstruction (infinite SNR) so CSV stays numeric.
  m[prefix + "_snr_db"] = s.diff2 > 0 ? (s.ref2 > 0 ? 10.0 * std::log10(s.ref2 / s.diff2) : -INFINITY) : 999.0;
  m[prefix + "_cosine"] = (s.ref2 > 0 && s.hat2 > 0) ? s.dot / std::sqrt(s.ref2 * s.hat2) : (s.ref2 == s.hat2 ? 1.0 : 0.0);
}

// Key and value reconstruction errors of KV heads [h0, h1) of a layer, into m.
inline void put_reconstruction_errors(MetricValues& m, const LayerTensors& t, std::int64_t h0, std::int64_t h1) {
  const std::int64_t slab = t.shape.slab_elements();
  ErrorSums ks, vs;
  ks.add(t.key + h0 * slab, t.key_hat + h0 * slab, (h1 - h0) * slab);
  vs.add(t.value + h0 * slab, t.value_hat + h0 * slab, (h1 - h0) * slab);
  put_errors(m, "key", ks);
  put_errors(m, "value", vs);
}

// The recorded queries of t if there are any (nullptr otherwise), after checking they fit the keys: same head
// dim, and a whole number of query heads per KV head (GQA).
inline const LayerQueries* usable_queries(const LayerTensors& t) {
  const LayerQueries* q = t.queries;
  if (!q || q->count == 0 || q->heads == 0) return nullptr;
  VIDKV_REQUIRE(q->dim == t.shape.channels, ShapeError, "query states have dim ", q->dim, " but keys have ", t.shape.channels);
  VIDKV_REQUIRE(q->heads % t.shape.heads == 0, ShapeError, "query heads ", q->heads, " not a multiple of KV heads ",
                t.shape.heads);
  return q;
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
