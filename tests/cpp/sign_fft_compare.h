// Test helper: compares the bytes and decodes of a sign quantizer with fft complex / real produced by another FFT
// implementation (the CUDA paths: cuFFT or the fused tile kernels) with the CPU reference's (FFTW), within the named
// bounds. Used by test_cuda_sign.cpp and, for the sign child of a composite, by the composite CUDA tests.
//
// The reference quantizes FFTW's components X (recomputed here with fft_forward_rows, the reference's own
// transform); the tested implementation quantizes X' with, per token row, |X'_k - X_k| <= D_row where
//   D_row = B_ref + B_test,  B_ref = sign_fft_tolerance::forward_bound(n, ||x_row||_2) (FFTW, checked against the
//   exact DFT in test_sign_cuda_helpers.cpp), B_test the same for cuFFT (FftBound::library) or the AVX-512
//   transform's componentwise fft_avx512_error_factor(n) u ||x_row||_1 for the fused tile kernels (FftBound::tile).
// Hence (as in test_sign_fft_avx512.cpp):
//   * a sign bit may differ only where the reference component lies within D_row of 0;
//   * a group's scale may differ by the mean of D_row over the group, plus one ulp of the scale dtype and two of
//     fp32 (each side rounds the double mean to fp32 and then to the scale dtype);
//   * the release's zero mins are identical bytes;
//   * decoders on the same bytes: within I_ref + I_test per output, I = inverse_bound(n, ||y_row||_2) (library) or
//     fft_avx512_error_factor(n) u (2/n) sum |stored bins| (tile), y the decoded components of that row;
//   * each decoder on its own encoder's bytes: additionally the change of the decoded spectrum moved through the
//     inverse, (1/n) sum_c w_c |dy_c| (w = 1; real kind: 2 for the bins counted twice by the Hermitian completion);
//   * a decode written as fp16 / bf16 is additionally allowed one ulp of that dtype (its rounding).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tolerance.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::test::sign_fft_compare {

using group_format::CodeLayout;
using group_format::GroupAxis;
using sign_format::Reconstruction;

struct Setup {
  SignFft fft = SignFft::real;
  GroupAxis axis = GroupAxis::channel;
  CodeLayout layout = CodeLayout::dense;
  DType scale_dtype = DType::f16;
  Reconstruction reconstruction = Reconstruction::zero_one;
  int group = 32;
};

// The setup of a sign quantizer's parameters (SignQuantizer::params(), or SignParams of a composite's child).
inline Setup setup_of(const SignParams& p) {
  return Setup{p.fft, p.axis, p.layout, p.scale_dtype, p.reconstruction, p.group};
}

// Which bound the tested transform obeys: cuFFT's (the library bound) or the fused tile kernels' (AVX-512's).
enum class FftBound { library, tile };

// The bound of a tier (SignQuantizer::tier(Device::cuda, shape).name, or a composite's tier naming it): the fused tiles'
// for "sign:cuda+fft-tile", the library bound otherwise.
inline FftBound bound_of_tier(const std::string& tier) {
  return tier.find("sign:cuda+fft-tile") != std::string::npos ? FftBound::tile : FftBound::library;
}

// The worst ratio of a difference to its allowance, with where it happened.
struct Worst {
  double ratio = 0;
  std::string where;
  void see(double err, double bound, const std::string& what) {
    const double r = bound > 0 ? err / bound : (err > 0 ? INFINITY : 0.0);
    if (r > ratio || (std::isnan(err) && where.empty())) ratio = std::isnan(err) ? INFINITY : r, where = what;
  }
};

inline double l1(const float* x, std::int64_t n) {
  double s = 0;
  for (std::int64_t j = 0; j < n; ++j) s += std::fabs(double(x[j]));
  return s;
}
inline double l2(const float* x, std::int64_t n) {
  double s = 0;
  for (std::int64_t j = 0; j < n; ++j) s += double(x[j]) * double(x[j]);
  return std::sqrt(s);
}

// Bound of one transform on a row x of n channels, per component.
inline double forward_bound(FftBound b, const float* x, std::int64_t n) {
  if (b == FftBound::library) return sign_fft_tolerance::forward_bound(n, l2(x, n));
  return fft_avx512_error_factor(n) * sign_fft_tolerance::kU * l1(x, n);
}

// Sum of |stored bins| of a row of components (complex: Y_k, k < n; real: X_0, X_k (k < n/2), X_{n/2}).
inline double stored_bins_l1(SignFft kind, const float* y, std::int64_t n) {
  double s = 0;
  if (kind == SignFft::complex) {
    for (std::int64_t k = 0; k < n; ++k) s += std::hypot(double(y[2 * k]), double(y[2 * k + 1]));
    return s;
  }
  s = std::fabs(double(y[0]));
  for (std::int64_t k = 1; 2 * k < n; ++k) s += std::hypot(double(y[2 * k - 1]), double(y[2 * k]));
  if (n % 2 == 0 && n > 1) s += std::fabs(double(y[n - 1]));
  return s;
}

// Bound of one inverse transform on a row y of decoded components, per output channel.
inline double inverse_bound(FftBound b, SignFft kind, const float* y, std::int64_t n) {
  if (b == FftBound::library) return sign_fft_tolerance::inverse_bound(n, l2(y, fft_components(kind, n)));
  return fft_avx512_error_factor(n) * sign_fft_tolerance::kU * (2.0 / double(n)) * stored_bins_l1(kind, y, n);
}

// How far any inverse output moves when the components change by d (the inverse is linear).
inline double inverse_lipschitz(SignFft kind, const std::vector<double>& d, std::int64_t n) {
  double s = 0;
  if (kind == SignFft::complex) {
    for (double v : d) s += std::fabs(v);
    return s / double(n);
  }
  for (std::int64_t c = 0; c < n; ++c) {
    const bool once = c == 0 || (n % 2 == 0 && c == n - 1);
    s += (once ? 1.0 : 2.0) * std::fabs(d[std::size_t(c)]);
  }
  return s / double(n);
}

// One ulp of dtype t at magnitude v (fp16 subnormal spacing 2^-24 at least); 0 for fp32 (no extra rounding).
inline double dtype_ulp(DType t, double v) {
  if (t == DType::f32 || v == 0) return t == DType::f16 ? 0x1p-24 : 0.0;
  const int e = std::ilogb(v);
  if (t == DType::f16) return std::max(std::ldexp(1.0, e - 10), 0x1p-24);
  return std::ldexp(1.0, e - 7);  // bf16
}

struct Report {
  Worst bits, scales, same_bytes, own_bytes;
  std::int64_t flipped = 0, values = 0;
  bool mins_equal = true;
  bool ok() const {
    return mins_equal && bits.ratio <= 1.0 && scales.ratio <= 1.0 && same_bytes.ratio <= 1.0 && own_bytes.ratio <= 1.0;
  }
  std::string str() const {
    std::ostringstream s;
    s << flipped << " of " << values << " sign bits differ; release mins equal " << mins_equal
      << "\n  worst |reference component| / allowed over the differing bits " << bits.ratio << " at " << bits.where
      << "\n  worst scale difference / allowed " << scales.ratio << " at " << scales.where
      << "\n  decoders on the same bytes: worst difference / allowed " << same_bytes.ratio << " at " << same_bytes.where
      << "\n  each decoder on its own bytes: worst difference / allowed " << own_bytes.ratio << " at " << own_bytes.where;
    return s.str();
  }
};

// The decoded components [rows, W] of a sign FFT block's bytes.
inline std::vector<float> decoded_components(const Setup& st, const group_format::GroupGrid& g, const std::uint8_t* bytes) {
  std::vector<float> y(std::size_t(g.elements()));
  const std::uint8_t* scales = bytes + sign_format::codes_bytes(st.layout, g);
  for (std::int64_t h = 0; h < g.heads; ++h)
    for (std::int64_t r = 0; r < g.rows; ++r)
      for (std::int64_t j = 0; j < g.length; ++j) {
        const float s = group_format::get_scalar(scales, g.group_index(h, r, j / g.group), st.scale_dtype);
        const unsigned bit = group_format::get_code(st.layout, bytes, g, 1, h, r, j);
        y[std::size_t(g.block_offset(h, r, j))] = sign_format::decode_value(bit, s, st.reconstruction);
      }
  return y;
}

// Compares everything above. x: the block the quantizer encoded ([heads, tokens, n] fp32, as both saw it);
// ref_bytes / test_bytes: the reference's and the tested encoder's bytes; ref_on_ref: the reference decode of
// ref_bytes; test_on_ref / test_on_test: the tested decoder on each (as fp32 values of a decode written in
// out_dtype). Any decode vector may be empty to skip its checks.
inline Report compare(const Setup& st, const BlockShape& shape, const std::vector<float>& x, const std::vector<std::uint8_t>& ref_bytes,
                      const std::vector<std::uint8_t>& test_bytes, FftBound bound, const std::vector<float>& ref_on_ref = {},
                      const std::vector<float>& test_on_ref = {}, const std::vector<float>& test_on_test = {},
                      DType out_dtype = DType::f32) {
  Report rep;
  const std::int64_t n = shape.channels, rows = shape.heads * shape.tokens, w = fft_components(st.fft, n);
  const auto g = group_format::make_group_grid(st.axis, shape.heads, shape.tokens, w, st.group);
  const std::size_t codes_bytes = sign_format::codes_bytes(st.layout, g);
  const std::size_t scales_bytes = sign_format::scales_bytes(g, st.scale_dtype);
  if (ref_bytes.size() != test_bytes.size() || ref_bytes.size() != sign_format::total_bytes(st.layout, g, st.scale_dtype)) {
    rep.mins_equal = false;
    rep.bits.see(1, 0, "byte counts differ");
    return rep;
  }
  rep.mins_equal = std::equal(ref_bytes.begin() + std::ptrdiff_t(codes_bytes + scales_bytes), ref_bytes.end(),
                              test_bytes.begin() + std::ptrdiff_t(codes_bytes + scales_bytes));

  std::vector<float> X(std::size_t(rows * w));
  if (rows > 0) fft_forward_rows(st.fft, x.data(), rows, n, X.data());
  std::vector<double> allowed(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r)
    allowed[std::size_t(r)] = forward_bound(FftBound::library, x.data() + r * n, n) + forward_bound(bound, x.data() + r * n, n);

  const std::uint8_t* ref_scales = ref_bytes.data() + codes_bytes;
  const std::uint8_t* test_scales = test_bytes.data() + codes_bytes;
  const double sd_ulp_rel = st.scale_dtype == DType::f16 ? 0x1p-10 : (st.scale_dtype == DType::bf16 ? 0x1p-7 : 0x1p-23);
  for (std::int64_t h = 0; h < g.heads; ++h)
    for (std::int64_t r = 0; r < g.rows; ++r)
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, len = g.group_size(gi), gidx = g.group_index(h, r, gi);
        const double s_ref = group_format::get_scalar(ref_scales, gidx, st.scale_dtype);
        const double s_test = group_format::get_scalar(test_scales, gidx, st.scale_dtype);
        double mean_allowed = 0;
        for (std::int64_t j = j0; j < j0 + len; ++j) {
          const std::int64_t i = g.block_offset(h, r, j), row = i / w;
          mean_allowed += allowed[std::size_t(row)] / double(len);
          ++rep.values;
          if (group_format::get_code(st.layout, ref_bytes.data(), g, 1, h, r, j) !=
              group_format::get_code(st.layout, test_bytes.data(), g, 1, h, r, j)) {
            ++rep.flipped;
            const double v = X[std::size_t(i)];
            rep.bits.see(std::fabs(v), allowed[std::size_t(row)],
                         "bit of token row " + std::to_string(row) + " component " + std::to_string(i % w) +
                             " (reference component " + std::to_string(v) + ")");
          }
        }
        const double smax = std::max(std::fabs(s_ref), std::fabs(s_test));
        const double ulp =
            smax > 0 ? std::max(std::ldexp(sd_ulp_rel, std::ilogb(smax)), st.scale_dtype == DType::f16 ? 0x1p-24 : 0.0) : 0.0;
        rep.scales.see(std::fabs(s_ref - s_test), mean_allowed + ulp + smax * 0x1p-22,
                       "scale of group " + std::to_string(gidx) + ": " + std::to_string(s_ref) + " vs " + std::to_string(s_test));
      }

  if (ref_on_ref.empty()) return rep;
  const auto y_ref = decoded_components(st, g, ref_bytes.data());
  const auto y_test = decoded_components(st, g, test_bytes.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* yr = y_ref.data() + r * w;
    const float* yt = y_test.data() + r * w;
    std::vector<double> dy(static_cast<std::size_t>(w));
    for (std::int64_t c = 0; c < w; ++c) dy[std::size_t(c)] = double(yt[c]) - double(yr[c]);
    const double same_ref = inverse_bound(FftBound::library, st.fft, yr, n) + inverse_bound(bound, st.fft, yr, n);
    const double own = inverse_lipschitz(st.fft, dy, n) + inverse_bound(FftBound::library, st.fft, yr, n) +
                       inverse_bound(bound, st.fft, yt, n);
    for (std::int64_t j = 0; j < n; ++j) {
      const std::size_t i = std::size_t(r * n + j);
      const double ref = ref_on_ref[i];
      auto at = [&](double got, double allowance, const char* what) {
        std::ostringstream s;
        s << "token row " << r << " channel " << j << ": got " << got << ", reference " << ref << ", allowed " << allowance << " ("
          << what << ")";
        return s.str();
      };
      if (!test_on_ref.empty()) {
        const double got = test_on_ref[i];
        const double a = same_ref + dtype_ulp(out_dtype, std::max(std::fabs(got), std::fabs(ref)));
        rep.same_bytes.see(std::fabs(got - ref), a, at(got, a, "reference's bytes"));
      }
      if (!test_on_test.empty()) {
        const double got = test_on_test[i];
        const double a = own + dtype_ulp(out_dtype, std::max(std::fabs(got), std::fabs(ref)));
        rep.own_bytes.see(std::fabs(got - ref), a, at(got, a, "own bytes"));
      }
    }
  }
  return rep;
}

// The decode tolerance of a composite test that only sees the block, not the sign child's components
// (kCudaFftDecodeTolerance, the analogue of kFftDecodeTolerance in test_plugin_conformance.cpp): how far a CUDA
// sign FFT decoder and the reference decoder may be apart on the same bytes. A decoded component is 0 or +-s, s a
// group's stored scale, a mean of |X| over components with |X_k| <= ||x_row||_1 of the channels the sign child got
// (a subset of the block's), rounded up by at most (1 + 2^-7) (bf16 the coarsest scale dtype); so ||y_row||_2 <=
// sqrt(2n) S with S = (1 + 2^-7) max_rows ||x_row||_1 and sum |stored bins| <= sqrt(2) (n/2 + 1) S ... <= sqrt(2) n S:
//   library: I <= (E(n) + 3u) sqrt(2/n) sqrt(2n) S = 2 (E(n) + 3u) S;   tile: I <= F(n) u (2/n) sqrt(2) n S.
// The tolerance is I_ref + I_test with n = the block's channel count (the child's n is smaller; E and F grow with n
// only through log n and the prime factors, so the caller passes the child's n where it knows it).
inline double decode_tolerance(const std::vector<float>& x, const BlockShape& s, std::int64_t child_n, FftBound bound) {
  double worst = 0;
  for (std::int64_t r = 0; r < s.heads * s.tokens; ++r) worst = std::max(worst, l1(x.data() + r * s.channels, s.channels));
  const double S = (1.0 + 0x1p-7) * worst;
  const double lib = 2.0 * (sign_fft_tolerance::library_fft_error_factor(child_n) + 3.0 * sign_fft_tolerance::kU) * S;
  const double tile = fft_avx512_error_factor(child_n) * sign_fft_tolerance::kU * 2.0 * std::sqrt(2.0) * S;
  return lib + (bound == FftBound::library ? lib : tile);
}

}  // namespace vidkv::test::sign_fft_compare
