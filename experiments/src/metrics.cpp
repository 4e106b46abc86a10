#include "vidkv/experiments/src/metric_kernels.h"
#include "vidkv/experiments/src/metrics.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <iterator>
#include <numeric>

#include "vidkv/core/error.h"

namespace vidkv {

namespace {

using metric_kernels::softmax;
using metric_kernels::top_k;

bool any_of_names(const std::vector<std::string>& names, std::initializer_list<const char*> group) {
  for (const auto& n : names)
    for (const char* g : group)
      if (n == g) return true;
  return false;
}

}  // namespace

MetricSelection MetricSelection::for_metrics(const std::vector<std::string>& names) {
  MetricSelection s;
  s.key_errors = any_of_names(names, {"key_rel_error", "key_mse", "key_snr_db", "key_cosine"});
  s.value_errors = any_of_names(names, {"value_rel_error", "value_mse", "value_snr_db", "value_cosine"});
  s.attention_logits = any_of_names(names, {"attn_logit_rel_error", "attn_kl"});
  s.attention_topk = any_of_names(names, {"attn_topk_overlap"});
  s.attention_outputs =
      any_of_names(names, {"attn_out_rel_error", "attn_out_rel_error_key_only", "attn_out_rel_error_value_only"});
  return s;
}

MetricValues layer_metrics_reference(const LayerTensors& t, std::int64_t head) {
  const BlockShape& sh = t.shape;
  VIDKV_ASSERT(head >= -1 && head < sh.heads, "head ", head, " of ", sh.heads);
  const std::int64_t h0 = head < 0 ? 0 : head, h1 = head < 0 ? sh.heads : head + 1;
  const std::int64_t slab = sh.slab_elements();
  MetricValues m;
  metric_kernels::put_reconstruction_errors(m, t, h0, h1);

  const LayerQueries* q = metric_kernels::usable_queries(t);
  if (!q) return m;
  const std::int64_t group = q->heads / sh.heads;
  const std::int64_t d = sh.channels;
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(d));
  double logit_d2 = 0, logit_r2 = 0, kl = 0, overlap = 0;
  double o_ref2 = 0, o_both2 = 0, o_k2 = 0, o_v2 = 0;
  std::int64_t queries_seen = 0;
  std::vector<double> s, sh_, p, ph, o(static_cast<std::size_t>(d)), ob(static_cast<std::size_t>(d)),
      ok(static_cast<std::size_t>(d)), ov(static_cast<std::size_t>(d));
  for (std::int64_t qh = 0; qh < q->heads; ++qh) {
    const std::int64_t kv = qh / group;
    if (kv < h0 || kv >= h1) continue;
    const float* K = t.key + kv * slab;
    const float* Kh = t.key_hat + kv * slab;
    const float* V = t.value + kv * slab;
    const float* Vh = t.value_hat + kv * slab;
    for (std::int64_t qi = 0; qi < q->count; ++qi) {
      const std::int64_t pos = q->token_index[static_cast<std::size_t>(qi)];
      if (pos < 0 || pos >= sh.tokens) continue;  // query outside the replayed tokens
      const float* qv = q->data.data() + (qh * q->count + qi) * d;
      const auto n = static_cast<std::size_t>(pos + 1);
      s.assign(n, 0.0);
      sh_.assign(n, 0.0);
      for (std::size_t j = 0; j < n; ++j) {
        double a = 0, b = 0;
        for (std::int64_t c = 0; c < d; ++c) {
          a += static_cast<double>(qv[c]) * K[static_cast<std::int64_t>(j) * d + c];
          b += static_cast<double>(qv[c]) * Kh[static_cast<std::int64_t>(j) * d + c];
        }
        s[j] = a * inv_sqrt_d;
        sh_[j] = b * inv_sqrt_d;
        logit_d2 += (s[j] - sh_[j]) * (s[j] - sh_[j]);
        logit_r2 += s[j] * s[j];
      }
      softmax(s, p);
      softmax(sh_, ph);
      double klq = 0;
      for (std::size_t j = 0; j < n; ++j)
        if (p[j] > 0) klq += p[j] * (std::log(p[j]) - std::log(std::max(ph[j], 1e-300)));
      kl += std::max(0.0, klq);
      const std::size_t k = std::min<std::size_t>(32, n);
      std::vector<std::size_t> ta, tb;
      top_k(p, k, ta);
      top_k(ph, k, tb);
      std::vector<std::size_t> common;
      std::set_intersection(ta.begin(), ta.end(), tb.begin(), tb.end(), std::back_inserter(common));
      overlap += static_cast<double>(common.size()) / static_cast<double>(k);
      std::fill(o.begin(), o.end(), 0.0);
      std::fill(ob.begin(), ob.end(), 0.0);
      std::fill(ok.begin(), ok.end(), 0.0);
      std::fill(ov.begin(), ov.end(), 0.0);
      for (std::size_t j = 0; j < n; ++j) {
        for (std::int64_t c = 0; c < d; ++c) {
          const double v = V[static_cast<std::int64_t>(j) * d + c], vh = Vh[static_cast<std::int64_t>(j) * d + c];
          o[static_cast<std::size_t>(c)] += p[j] * v;
          ob[static_cast<std::size_t>(c)] += ph[j] * vh;
          ok[static_cast<std::size_t>(c)] += ph[j] * v;
          ov[static_cast<std::size_t>(c)] += p[j] * vh;
        }
      }
      for (std::size_t c = 0; c < o.size(); ++c) {
        o_ref2 += o[c] * o[c];
        o_both2 += (o[c] - ob[c]) * (o[c] - ob[c]);
        o_k2 += (o[c] - ok[c]) * (o[c] - ok[c]);
        o_v2 += (o[c] - ov[c]) * (o[c] - ov[c]);
      }
      ++queries_seen;
    }
  }
  if (queries_seen == 0) return m;
  const double nq = static_cast<double>(queries_seen);
  m["attn_logit_rel_error"] = logit_r2 > 0 ? std::sqrt(logit_d2 / logit_r2) : 0.0;
  m["attn_kl"] = kl / nq;
  m["attn_topk_overlap"] = overlap / nq;
  m["attn_out_rel_error"] = o_ref2 > 0 ? std::sqrt(o_both2 / o_ref2) : 0.0;
  m["attn_out_rel_error_key_only"] = o_ref2 > 0 ? std::sqrt(o_k2 / o_ref2) : 0.0;
  m["attn_out_rel_error_value_only"] = o_ref2 > 0 ? std::sqrt(o_v2 / o_ref2) : 0.0;
  return m;
}

}  // namespace vidkv
