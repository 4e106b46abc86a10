#include "vidkv/experiments/src/decode_step_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "vidkv/core/error.h"

namespace vidkv {

const std::vector<std::string>& decode_step_metric_names() {
  static const std::vector<std::string> names = {"decode_attn_out_rel_error", "decode_attn_out_rel_value",
                                                 "decode_attn_out_mse", "decode_attn_kl", kHeadlineMetric};
  return names;
}

double depth_weighted_mean(const std::vector<double>& per_layer) {
  const auto L = static_cast<double>(per_layer.size());
  double num = 0, den = 0;
  for (std::size_t l = 0; l < per_layer.size(); ++l) {
    const double w = (L - static_cast<double>(l)) * (L - static_cast<double>(l));
    num += w * per_layer[l];
    den += w;
  }
  return den > 0 ? num / den : NAN;
}

bool wants_decode_step_metrics(const std::vector<std::string>& names) {
  for (const auto& n : names)
    for (const auto& d : decode_step_metric_names())
      if (n == d) return true;
  return false;
}

std::int64_t trace_prompt_tokens(const TraceTokens& tokens) {
  for (std::int64_t i = 0; i < tokens.size(); ++i)
    if (tokens.modality[static_cast<std::size_t>(i)] == Modality::generated) return i;
  return tokens.size();
}

namespace {

// One token [heads, 1, dim] of x [heads, T, dim].
std::vector<float> token_slice(const float* x, const BlockShape& s, std::int64_t t) {
  std::vector<float> out(static_cast<std::size_t>(s.heads * s.channels));
  for (std::int64_t h = 0; h < s.heads; ++h)
    std::memcpy(out.data() + h * s.channels, x + (h * s.tokens + t) * s.channels,
                static_cast<std::size_t>(s.channels) * sizeof(float));
  return out;
}

// Softmax of q . K[0..n) / sqrt(d) in double, K rows of length d. Each logit is one sum over c in order; four rows
// are summed side by side (four independent chains: the same values, without waiting on one chain's latency).
void attention_probs(const float* q, const float* K, std::int64_t n, std::int64_t d, std::vector<double>& p) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  p.assign(static_cast<std::size_t>(n), 0.0);
  double mx = -INFINITY;
  constexpr std::int64_t kChains = 4;
  std::int64_t j = 0;
  for (; j + kChains <= n; j += kChains) {
    double s[kChains] = {};
    for (std::int64_t c = 0; c < d; ++c)
      for (std::int64_t l = 0; l < kChains; ++l) s[l] += static_cast<double>(q[c]) * K[(j + l) * d + c];
    for (std::int64_t l = 0; l < kChains; ++l) {
      p[static_cast<std::size_t>(j + l)] = s[l] * scale;
      mx = std::max(mx, s[l] * scale);
    }
  }
  for (; j < n; ++j) {
    double s = 0;
    for (std::int64_t c = 0; c < d; ++c) s += static_cast<double>(q[c]) * K[j * d + c];
    p[static_cast<std::size_t>(j)] = s * scale;
    mx = std::max(mx, s * scale);
  }
  double z = 0;
  for (auto& v : p) z += (v = std::exp(v - mx));
  for (auto& v : p) v /= z;
}

}  // namespace

MetricValues decode_step_metrics(const KvCodec& codec, const LifecycleParams& params, const float* key,
                                 const float* value, const BlockShape& shape, const TokenContext& ctx,
                                 DType data_dtype, const LayerQueries& queries, const DecodeRotary& rotary) {
  MetricValues m;
  const std::int64_t T = shape.tokens, H = shape.heads, d = shape.channels;
  const std::int64_t prefill = params.replay_prefill(T);
  // Decode-step queries, grouped by their token.
  std::map<std::int64_t, std::vector<std::int64_t>> at_token;  // token -> query indices
  for (std::int64_t i = 0; i < queries.count; ++i) {
    const std::int64_t t = queries.token_index[static_cast<std::size_t>(i)];
    if (t >= prefill && t < T) at_token[t].push_back(i);
  }
  if (at_token.empty() || queries.heads == 0) return m;
  VIDKV_REQUIRE(queries.dim == d, ShapeError, "decode-step metrics: queries have dim ", queries.dim, ", keys ", d);
  VIDKV_REQUIRE(queries.heads % H == 0, ShapeError, "decode-step metrics: ", queries.heads,
                " query heads are not a multiple of ", H, " KV heads (GQA)");
  const std::int64_t group = queries.heads / H;

  // Exact keys as attention reads them (rotated for rope: pre).
  std::vector<float> key_rot;
  const float* K = key;
  if (rotary.params) {
    key_rot.assign(key, key + H * T * d);
    apply_rotary_rows(key_rot.data(), H, T, d, rotary.positions, *rotary.params);
    K = key_rot.data();
  }

  LayerCache cache(codec, params, H, d, ctx, data_dtype);
  if (prefill > 0) {
    std::vector<float> kp(static_cast<std::size_t>(H * prefill * d)), vp(kp.size());
    for (std::int64_t h = 0; h < H; ++h) {
      std::memcpy(kp.data() + h * prefill * d, key + h * T * d, static_cast<std::size_t>(prefill * d) * sizeof(float));
      std::memcpy(vp.data() + h * prefill * d, value + h * T * d, static_cast<std::size_t>(prefill * d) * sizeof(float));
    }
    cache.append(kp.data(), vp.data(), prefill);
  }
  double err2 = 0, ref2 = 0, venergy = 0, kl = 0;
  std::int64_t scored = 0;
  std::vector<float> kh, vh, q(static_cast<std::size_t>(d));
  std::vector<double> p, ph, o(static_cast<std::size_t>(d)), oh(static_cast<std::size_t>(d));
  // ||v_j||^2 of every exact value row, summed over c in order once per layer (the same double sums as per query).
  std::vector<double> vnorm(static_cast<std::size_t>(H * T), 0.0);
  for (std::int64_t r = 0; r < H * T; ++r) {
    double vn = 0;
    for (std::int64_t c = 0; c < d; ++c) vn += static_cast<double>(value[r * d + c]) * value[r * d + c];
    vnorm[static_cast<std::size_t>(r)] = vn;
  }
  const std::int64_t last = at_token.rbegin()->first;
  for (std::int64_t t = prefill; t <= last; ++t) {
    cache.append(token_slice(key, shape, t).data(), token_slice(value, shape, t).data(), 1);
    const auto it = at_token.find(t);
    if (it == at_token.end()) continue;
    cache.materialize(kh, vh);  // [H, t + 1, d]: what the model read at this step
    const std::int64_t n = t + 1;
    if (rotary.params) apply_rotary_rows(kh.data(), H, n, d, rotary.positions, *rotary.params);
    for (const std::int64_t qi : it->second) {
      for (std::int64_t qh = 0; qh < queries.heads; ++qh) {
        const std::int64_t kv = qh / group;
        std::memcpy(q.data(), queries.data.data() + (qh * queries.count + qi) * d, static_cast<std::size_t>(d) * sizeof(float));
        if (rotary.params) {
          const double pos = rotary.positions[static_cast<std::size_t>(t)];
          apply_rotary(q.data(), d, pos, *rotary.params);
        }
        const float* Kx = K + kv * T * d;
        const float* Vx = value + kv * T * d;
        const float* Kq = kh.data() + kv * n * d;
        const float* Vq = vh.data() + kv * n * d;
        attention_probs(q.data(), Kx, n, d, p);
        attention_probs(q.data(), Kq, n, d, ph);
        const double* vn = vnorm.data() + kv * T;
        for (std::int64_t j = 0; j < n; ++j) {
          const double a = p[static_cast<std::size_t>(j)], b = ph[static_cast<std::size_t>(j)];
          if (a > 0) kl += a * (std::log(a) - std::log(std::max(b, 1e-300)));
          venergy += a * vn[j];
        }
        // o_c = sum_j p_j v_jc for every c, each sum over j in order (rows read contiguously).
        std::fill(o.begin(), o.end(), 0.0);
        std::fill(oh.begin(), oh.end(), 0.0);
        for (std::int64_t j = 0; j < n; ++j) {
          const double a = p[static_cast<std::size_t>(j)], b = ph[static_cast<std::size_t>(j)];
          for (std::int64_t c = 0; c < d; ++c) {
            o[static_cast<std::size_t>(c)] += a * Vx[j * d + c];
            oh[static_cast<std::size_t>(c)] += b * Vq[j * d + c];
          }
        }
        for (std::int64_t c = 0; c < d; ++c) {
          const double oc = o[static_cast<std::size_t>(c)], e = oc - oh[static_cast<std::size_t>(c)];
          err2 += e * e;
          ref2 += oc * oc;
        }
        ++scored;
      }
    }
  }
  m["decode_attn_out_rel_error"] = ref2 > 0 ? std::sqrt(err2 / ref2) : (err2 > 0 ? INFINITY : 0.0);
  m["decode_attn_out_rel_value"] = venergy > 0 ? std::sqrt(err2 / venergy) : (err2 > 0 ? INFINITY : 0.0);
  m["decode_attn_out_mse"] = err2 / static_cast<double>(scored * d);
  m["decode_attn_kl"] = std::max(0.0, kl / static_cast<double>(scored));
  return m;
}

}  // namespace vidkv
