#include "vidkv/attention/decode_attention_tolerance.h"

#include <algorithm>
#include <cmath>

#include "vidkv/attention/decode_attention.h"
#include "vidkv/attention/decode_attention_fragment.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tolerance.h"

namespace vidkv::decode_attention_tolerance {

namespace af = attention_format;

namespace {
// A block's packed bytes on the host (copied from the device for a cuda cache).
std::vector<std::uint8_t> host_bytes(const LayerCache& cache, const LayerCache::BlockRef& blk) {
  std::vector<std::uint8_t> host(blk.layout->bytes());
  if (cache.execution().on_cuda()) {
    copy_to_host(host.data(), blk.bytes, host.size(), cache.execution().cuda_stream);
  } else {
    std::copy(blk.bytes, blk.bytes + host.size(), host.begin());
  }
  return host;
}
}  // namespace

double fft_score_error(const LayerCache& cache, std::int64_t h, const float* q, Arithmetic arithmetic) {
  const LayerCache::SideRef key = cache.key_side();
  const std::int64_t d = cache.channels(), heads = cache.heads();
  const af::SideFormat f = side_format(*key.quantizer, d, KvSide::key);
  const bool first_fft = af::child_fft(f.first);
  const bool second_fft = f.mixed && af::child_fft(f.second);
  if (!first_fft && !second_fft) return 0.0;
  double worst = 0.0;
  for (const auto& blk : key.blocks) {
    const std::int64_t n_tokens = blk.end - blk.begin;
    const std::vector<std::uint8_t> host = host_bytes(cache, blk);
    const af::PartRef part = af::part_of(f, host.data(), heads, n_tokens, d, h);
    // sum_c |q_c| over the channels of each FFT child.
    double q_first = 0.0, q_second = 0.0;
    for (std::int64_t c = 0; c < d; ++c)
      (af::gathered_index(f, part, d, c) < part.first_channels ? q_first : q_second) += std::fabs(static_cast<double>(q[c]));
    for (std::int64_t t = 0; t < n_tokens; ++t) {
      double e = 0.0;
      for (int child = 0; child < 2; ++child) {
        if (!(child == 0 ? first_fft : second_fft)) continue;
        // n channels, m stored components (n for fft: real, 2n for complex) from part index base.
        const std::int64_t n = child == 0 ? part.first_channels : part.second_channels;
        const std::int64_t m = child == 0 ? part.first_n : part.second_n, base = child == 0 ? 0 : part.first_n;
        if (n == 0) continue;
        double l1 = 0.0, l2 = 0.0;
        for (std::int64_t j = 0; j < m; ++j) {
          const double y = af::part_element(part, t, base + j);
          l1 += std::fabs(y);
          l2 += y * y;
        }
        const double qs = child == 0 ? q_first : q_second;
        const double dot_u = arithmetic != Arithmetic::cuda_cores ? static_cast<double>(n + 3 + 3 * (6 * m + 73))
                                                                    : static_cast<double>(n + 3 + m);
        e += qs * sign_fft_tolerance::inverse_bound(n, std::sqrt(l2)) + dot_u * kU * (2.0 / static_cast<double>(n)) * qs * l1;
      }
      worst = std::max(worst, e / std::sqrt(static_cast<double>(d)));
    }
  }
  return worst;
}

FragmentScoreTerms fragment_score_terms(const LayerCache& cache, std::int64_t h, const float* q) {
  const LayerCache::SideRef key = cache.key_side();
  const std::int64_t d = cache.channels(), heads = cache.heads(), T = cache.tokens();
  const af::SideFormat f = side_format(*key.quantizer, d, KvSide::key);
  FragmentScoreTerms out;
  out.value_slots = attention_fragment::vidkv_values_ok(side_format(*cache.value_side().quantizer, d, KvSide::value));
  if (!af::needs_transform(f)) return out;
  out.mag.assign(static_cast<std::size_t>(T), 0.0);
  out.sizes.assign(static_cast<std::size_t>(T), 0.0);
  out.peak.assign(static_cast<std::size_t>(T), 0.0);
  out.in_block.assign(static_cast<std::size_t>(T), 0);
  const std::int64_t W = af::key_width(f, d);
  std::vector<float> gathered(static_cast<std::size_t>(d));
  for (const auto& blk : key.blocks) {
    const std::int64_t n_tokens = blk.end - blk.begin;
    const std::vector<std::uint8_t> host = host_bytes(cache, blk);
    const af::PartRef part = af::part_of(f, host.data(), heads, n_tokens, d, h);
    for (std::int64_t c = 0; c < d; ++c) gathered[static_cast<std::size_t>(af::gathered_index(f, part, d, c))] = q[c];
    std::vector<double> tq(static_cast<std::size_t>(W)), mx(static_cast<std::size_t>(W), 0.0);
    for (std::int64_t i = 0; i < W; ++i) {
      tq[static_cast<std::size_t>(i)] = std::fabs(static_cast<double>(af::transform_entry(f, part, gathered.data(), i)));
      out.qmax = std::max(out.qmax, tq[static_cast<std::size_t>(i)]);
      for (std::int64_t t = 0; t < n_tokens; ++t)
        mx[static_cast<std::size_t>(i)] = std::max(mx[static_cast<std::size_t>(i)], std::fabs(static_cast<double>(af::part_element(part, t, i))));
    }
    double peak = 0.0;  // max_i |tq_i| 2 M_i over the block's part indices
    for (std::int64_t i = 0; i < W; ++i) peak = std::max(peak, tq[static_cast<std::size_t>(i)] * 2.0 * mx[static_cast<std::size_t>(i)]);
    for (std::int64_t t = 0; t < n_tokens; ++t) {
      const auto tt = static_cast<std::size_t>(blk.begin + t);
      for (std::int64_t i = 0; i < W; ++i) {
        const double size = std::fabs(static_cast<double>(af::part_element(part, t, i))) + 2.0 * mx[static_cast<std::size_t>(i)];
        out.mag[tt] += tq[static_cast<std::size_t>(i)] * size;
        out.sizes[tt] += size;
      }
      out.peak[tt] = peak;
      out.in_block[tt] = 1;
    }
  }
  return out;
}

namespace {

// 6., weighted by the attention's own probabilities (the decoded K/V in double).
std::vector<double> fragment_tolerance(const float* q, const std::vector<double>& key, const std::vector<double>& value,
                                       std::int64_t tokens, std::int64_t channels, double extra,
                                       const std::vector<double>& kmax, double qmax, double vmax, double accumulation,
                                       const FragmentScoreTerms* terms) {
  // kmax: M_i = max_t |k_ti|, |b_i| <= M_i, |a_i c_ti| <= |k_ti| + M_i
  const auto D = static_cast<std::size_t>(channels), T = static_cast<std::size_t>(tokens);
  const double rs = 1.0 / std::sqrt(static_cast<double>(channels));
  std::vector<double> s(T), e(T), w(T, 0.0);
  double smax = -HUGE_VAL, emax = 0.0;
  // The codes as fp16 subnormals (6., last paragraph): per MMA at most 17 2^-11 2^-s times its largest |B| (at least
  // fp16's 2^-14, a subnormal B's own alignment) in the codes' units, s >= 4 the codes' lowest bit in their fp16 half
  // (attention_fragment::kSubnormalLowestShift); a key MMA's B is x_i = q''_i a_i = q_i a_i / 2^e, |a_i| <= 2 M_i,
  // 2^e <= 2 max |q|: in the query's units max(max_i |q_i| 2 M_i, 2^-13 max |q|), over D / 16 MMAs.
  const double mma_alignment = 17.0 * std::ldexp(0x1p-11, -attention_fragment::kSubnormalLowestShift);
  double channel_peak = 0.0;  // max_i |q_i| 2 M_i
  for (std::size_t i = 0; i < D; ++i) channel_peak = std::max(channel_peak, std::fabs(static_cast<double>(q[i])) * 2.0 * kmax[i]);
  // the vidkv instance's values (FragmentScoreTerms::value_slots): the values' B is p~ itself against the slots, whose
  // unit (1) bounds the products even where a token's trits are all 0
  const bool slots = terms && terms->value_slots;
  for (std::size_t t = 0; t < T; ++t) {
    double dot = 0.0, mag = 0.0, sizes = 0.0;
    for (std::size_t i = 0; i < D; ++i) {
      const double qi = static_cast<double>(q[i]), k = key[t * D + i];
      dot += qi * k;
      sizes += std::fabs(k) + 2.0 * kmax[i];                    // sum_i (|a_i c_ti| + |b_i|)
      mag += std::fabs(qi) * (std::fabs(k) + 2.0 * kmax[i]);  // sum_i |q_i| (|a_i c_ti| + |b_i|)
      w[t] = std::max(w[t], std::fabs(value[t * D + i]));      // W_t: |b_tg| <= W_t, |a_tg c_tc| <= |v_tc| + W_t
    }
    s[t] = dot * rs;
    double qm = qmax, peak = channel_peak;
    if (terms && !terms->in_block.empty() && terms->in_block[t]) {  // the block's part indices (fragment_score_terms)
      mag = terms->mag[t];
      sizes = terms->sizes[t];
      qm = terms->qmax;
      peak = terms->peak[t];
    }
    e[t] = (0x1p-10 + 0x1p-22 + static_cast<double>(8 * channels + 40) * kU) * mag * rs +
           0x1p-24 * (1.0 + 0x1p-11) * qm * sizes * rs + 0x1p-22 * std::sqrt(static_cast<double>(channels)) * qm +
           static_cast<double>(channels / 16) * mma_alignment * std::max(peak, 0x1p-13 * qm) * rs + 4.0 * kU + extra;
    smax = std::max(smax, s[t]);
    emax = std::max(emax, e[t]);
  }
  double l = 0.0;
  for (std::size_t t = 0; t < T; ++t) {
    s[t] = std::exp(s[t] - smax);  // p_t
    l += s[t];
  }
  // Scores moved by |d_t| <= E = max e_t: o~ - o = sum_t p_t (e^d_t - 1)(v_t - o) / sum_t p_t e^d_t, with
  // |e^d - 1| <= |d| (e^E - 1) / E and sum_t p_t e^d_t >= L e^-E: the first-order sum times e^E (e^E - 1) / E (exact
  // for every E, 1 + 1.5 E + O(E^2)); the values' factor roundings are weighted by the moved weights, within e^2E of p / L.
  const double second_order = emax > 0.0 ? std::exp(emax) * std::expm1(emax) / emax : 1.0;
  const double weights = std::exp(2.0 * emax);
  std::vector<double> out(D, 0.0);
  for (std::size_t c = 0; c < D; ++c) {
    double o = 0.0;
    for (std::size_t t = 0; t < T; ++t) o += s[t] * value[t * D + c];
    o /= l;
    double scores = 0.0, factors = 0.0, subnormal = 0.0;
    for (std::size_t t = 0; t < T; ++t) {
      const double size = std::fabs(value[t * D + c]) + 2.0 * w[t];  // |a_tg c_tc| + |b_tg| <= |v_tc| + 2 W_t
      scores += s[t] / l * e[t] * std::fabs(value[t * D + c] - o);
      // the value MMAs' B: p~_t a_tg, |a_tg| <= 2 W_t (kivi); p~_t itself against the slots (vidkv, the trits' unit
      // 1 even where a token's trits are all 0), within (1 + 2^-10) of p_t times that; each token in one 16-token MMA
      // per channel, whose largest |B| is at most the sum of its |B|s (the 2^-14 floor: per MMA, below)
      const double b_size = slots ? std::max(2.0 * w[t], 1.0) : 2.0 * w[t];
      factors += s[t] / l * ((0x1p-10 + 0x1p-22) * size + (1.0 + 0x1p-10) * mma_alignment * b_size);
      subnormal += 0x1p-25 * size;  // fp16(p_t) below fp16's normal range: 2^-25 absolute, whatever the weight
    }
    out[c] = second_order * scores + weights * (factors + subnormal) + accumulation * vmax +
             static_cast<double>(tokens) * 0x1p-23 + static_cast<double>(tokens / 16 + 2) * mma_alignment * 0x1p-14;
  }
  return out;
}

}  // namespace

std::vector<double> output_tolerance(const float* q, const std::vector<double>& key, const std::vector<double>& value,
                                     std::int64_t tokens, std::int64_t channels, double extra, Arithmetic arithmetic,
                                     const FragmentScoreTerms* terms) {
  if (arithmetic != Arithmetic::cuda_cores) {  // 5. and 6.
    double s1 = 0.0, vmax = 0.0, qmax = 0.0;
    std::vector<double> kmax(static_cast<std::size_t>(channels), 0.0);  // M_i = max_t |k_ti|
    for (std::int64_t c = 0; c < channels; ++c) {
      double& km = kmax[static_cast<std::size_t>(c)];
      for (std::int64_t t = 0; t < tokens; ++t) {
        km = std::max(km, std::fabs(key[static_cast<std::size_t>(t * channels + c)]));
        vmax = std::max(vmax, std::fabs(value[static_cast<std::size_t>(t * channels + c)]));
      }
      s1 += 3.0 * std::fabs(static_cast<double>(q[c])) * km;
      qmax = std::max(qmax, std::fabs(static_cast<double>(q[c])));
    }
    s1 /= std::sqrt(static_cast<double>(channels));
    const double accumulation = (static_cast<double>(6 * tokens + 1) + 3.0 * static_cast<double>(4 * tokens + 400)) * kU;
    if (arithmetic == Arithmetic::fragment)
      return fragment_tolerance(q, key, value, tokens, channels, extra, kmax, qmax, vmax, accumulation, terms);
    const double e_s = static_cast<double>(6 * channels + 8 + 65) * kU * s1;
    const double e_p = e_s + 4.0 * kU + extra;
    const double bound = (4.0 * e_p + 0x1p-16 + accumulation) * vmax;
    return std::vector<double>(static_cast<std::size_t>(channels), bound);
  }
  double s1 = 0.0;
  for (std::int64_t t = 0; t < tokens; ++t) {
    double s = 0.0;
    for (std::int64_t c = 0; c < channels; ++c) s += std::fabs(static_cast<double>(q[c]) * key[static_cast<std::size_t>(t * channels + c)]);
    s1 = std::max(s1, s / std::sqrt(static_cast<double>(channels)));
  }
  const double e_s = static_cast<double>(channels + 4) * kU * s1;
  const double e_p = e_s + 4.0 * kU + extra;
  std::vector<double> out(static_cast<std::size_t>(channels), 0.0);
  for (std::int64_t c = 0; c < channels; ++c) {
    double vmax = 0.0;
    for (std::int64_t t = 0; t < tokens; ++t) vmax = std::max(vmax, std::fabs(value[static_cast<std::size_t>(t * channels + c)]));
    out[static_cast<std::size_t>(c)] = (4.0 * e_p + static_cast<double>(6 * tokens + 1) * kU) * vmax;
  }
  return out;
}

}  // namespace vidkv::decode_attention_tolerance
