// layer_metrics_all(): every head's and the layer's metrics in one pass, bit-identical to layer_metrics() called
// per head and for the layer (metrics.h). Why it is identical:
//  - each sum is accumulated with the same operations in the same order as in layer_metrics(): per query, the
//    per-key terms are added key by key, and every query's terms go both to its head's sums and to the layer's
//    sums (the layer call visits query heads in the same ascending order);
//  - logits: s_j = sum_c q_c * K[j][c] in ascending c, evaluated for all j at once from K transposed to [c][j];
//  - outputs: o_c += p_j * v_jc in ascending j for every c, as before (now through restrict pointers);
//  - top-k: the comparator (p descending, then index ascending) is a strict total order, so nth_element + sort
//    selects exactly the set partial_sort selects.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/metric_kernels.h"
#include "vidkv/experiments/src/metrics.h"

namespace vidkv {

namespace {

using metric_kernels::ErrorSums;
using metric_kernels::put_errors;
using metric_kernels::softmax;
using metric_kernels::top_k;





// a[j] += q * kt[j] and b[j] += q * kht[j] for j < n (one channel of the logits of every key).
void logit_step(double q, const float* __restrict kt, const float* __restrict kht, std::size_t n, double* __restrict a,
                double* __restrict b) {
  for (std::size_t j = 0; j < n; ++j) {
    a[j] += q * static_cast<double>(kt[j]);
    b[j] += q * static_cast<double>(kht[j]);
  }
}

// o += p_j v, ob += ph_j vh, ok += ph_j v, ov += p_j vh over d channels (one key's contribution).
void output_step(double pj, double phj, const float* __restrict v, const float* __restrict vh, std::size_t d,
                 double* __restrict o, double* __restrict ob, double* __restrict ok, double* __restrict ov) {
  for (std::size_t c = 0; c < d; ++c) {
    const double x = v[c], xh = vh[c];
    o[c] += pj * x;
    ob[c] += phj * xh;
    ok[c] += phj * x;
    ov[c] += pj * xh;
  }
}

struct AttentionSums {
  double logit_d2 = 0, logit_r2 = 0, kl = 0, overlap = 0, o_ref2 = 0, o_both2 = 0, o_k2 = 0, o_v2 = 0;
  std::int64_t queries_seen = 0;
  void put(MetricValues& m) const {
    if (queries_seen == 0) return;
    const double nq = static_cast<double>(queries_seen);
    m["attn_logit_rel_error"] = logit_r2 > 0 ? std::sqrt(logit_d2 / logit_r2) : 0.0;
    m["attn_kl"] = kl / nq;
    m["attn_topk_overlap"] = overlap / nq;
    m["attn_out_rel_error"] = o_ref2 > 0 ? std::sqrt(o_both2 / o_ref2) : 0.0;
    m["attn_out_rel_error_key_only"] = o_ref2 > 0 ? std::sqrt(o_k2 / o_ref2) : 0.0;
    m["attn_out_rel_error_value_only"] = o_ref2 > 0 ? std::sqrt(o_v2 / o_ref2) : 0.0;
  }
};

}  // namespace

std::vector<MetricValues> layer_metrics_all(const LayerTensors& t) {
  const BlockShape& sh = t.shape;
  const std::int64_t slab = sh.slab_elements();
  std::vector<MetricValues> out(static_cast<std::size_t>(sh.heads + 1));
  for (std::int64_t h = -1; h < sh.heads; ++h) {
    const std::int64_t h0 = h < 0 ? 0 : h, h1 = h < 0 ? sh.heads : h + 1;
    metric_kernels::put_reconstruction_errors(out[static_cast<std::size_t>(h < 0 ? sh.heads : h)], t, h0, h1);
  }
  const LayerQueries* q = metric_kernels::usable_queries(t);
  if (!q) return out;
  const std::int64_t group = q->heads / sh.heads;
  const std::int64_t d = sh.channels;
  const auto ud = static_cast<std::size_t>(d);
  const auto tokens = static_cast<std::size_t>(sh.tokens);
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<AttentionSums> head_sums(static_cast<std::size_t>(sh.heads));
  AttentionSums layer_sums;
  std::vector<float> kt(ud * tokens), kht(ud * tokens);  // K and K' of the current KV head, [channel][token]
  std::int64_t transposed = -1;
  std::vector<double> s, sh_, p, ph, o(ud), ob(ud), ok(ud), ov(ud);
  std::vector<std::size_t> ta, tb, common;
  for (std::int64_t qh = 0; qh < q->heads; ++qh) {
    const std::int64_t kv = qh / group;
    const float* V = t.value + kv * slab;
    const float* Vh = t.value_hat + kv * slab;
    if (transposed != kv) {
      const float* K = t.key + kv * slab;
      const float* Kh = t.key_hat + kv * slab;
      for (std::size_t j = 0; j < tokens; ++j)
        for (std::size_t c = 0; c < ud; ++c) {
          kt[c * tokens + j] = K[j * ud + c];
          kht[c * tokens + j] = Kh[j * ud + c];
        }
      transposed = kv;
    }
    for (std::int64_t qi = 0; qi < q->count; ++qi) {
      const std::int64_t pos = q->token_index[static_cast<std::size_t>(qi)];
      if (pos < 0 || pos >= sh.tokens) continue;
      const float* qv = q->data.data() + (qh * q->count + qi) * d;
      const auto n = static_cast<std::size_t>(pos + 1);
      s.assign(n, 0.0);
      sh_.assign(n, 0.0);
      for (std::size_t c = 0; c < ud; ++c)
        logit_step(static_cast<double>(qv[c]), kt.data() + c * tokens, kht.data() + c * tokens, n, s.data(), sh_.data());
      for (std::size_t j = 0; j < n; ++j) {
        s[j] *= inv_sqrt_d;
        sh_[j] *= inv_sqrt_d;
      }
      softmax(s, p);
      softmax(sh_, ph);
      double klq = 0;
      for (std::size_t j = 0; j < n; ++j)
        if (p[j] > 0) klq += p[j] * (std::log(p[j]) - std::log(std::max(ph[j], 1e-300)));
      const std::size_t k = std::min<std::size_t>(32, n);
      top_k(p, k, ta);
      top_k(ph, k, tb);
      common.clear();
      std::set_intersection(ta.begin(), ta.end(), tb.begin(), tb.end(), std::back_inserter(common));
      const double overlap_q = static_cast<double>(common.size()) / static_cast<double>(k);
      std::fill(o.begin(), o.end(), 0.0);
      std::fill(ob.begin(), ob.end(), 0.0);
      std::fill(ok.begin(), ok.end(), 0.0);
      std::fill(ov.begin(), ov.end(), 0.0);
      for (std::size_t j = 0; j < n; ++j)
        output_step(p[j], ph[j], V + j * ud, Vh + j * ud, ud, o.data(), ob.data(), ok.data(), ov.data());
      // The reference's accumulation sequence, once into the head's sums and once into the layer's.
      for (AttentionSums* a : {&head_sums[static_cast<std::size_t>(kv)], &layer_sums}) {
        for (std::size_t j = 0; j < n; ++j) {
          a->logit_d2 += (s[j] - sh_[j]) * (s[j] - sh_[j]);
          a->logit_r2 += s[j] * s[j];
        }
        a->kl += std::max(0.0, klq);
        a->overlap += overlap_q;
        for (std::size_t c = 0; c < ud; ++c) {
          a->o_ref2 += o[c] * o[c];
          a->o_both2 += (o[c] - ob[c]) * (o[c] - ob[c]);
          a->o_k2 += (o[c] - ok[c]) * (o[c] - ok[c]);
          a->o_v2 += (o[c] - ov[c]) * (o[c] - ov[c]);
        }
        ++a->queries_seen;
      }
    }
  }
  for (std::int64_t h = 0; h < sh.heads; ++h) head_sums[static_cast<std::size_t>(h)].put(out[static_cast<std::size_t>(h)]);
  layer_sums.put(out[static_cast<std::size_t>(sh.heads)]);
  return out;
}

}  // namespace vidkv
