// The AVX-512 channel FFT of the optimised sign path (plugins/quantizers/sign/sign_fft_avx512.{h,cpp}) against the
// exact DFT (double) and FFTW (the reference's transforms), and the sign quantizer built on it against the
// reference quantizer.
//
// The bound (derived in sign_fft_avx512.cpp): per output component, with F(n) = fft_avx512_error_factor(n)
// = 10.01 (log2 n + 2) and u = 2^-24,
//   forward  |X^_k - X_k| <= B_fwd = F(n) u sum_j |x_j|                       (x: the row)
//   inverse  |x^_j - x_j| <= B_inv = F(n) u (2/n) sum |Y_k| over stored bins   (real: k = 0 .. n/2; complex: k < n)
// Both transforms are checked against the exact DFT with it. FFTW's own error is checked against the same bound
// on the same data (its codelets are O(log n) algorithms as well); then, by the triangle inequality, the two
// implementations differ by at most 2 B, which is the tolerance the quantizer-level checks below and the
// conformance test (test_plugin_conformance.cpp) build on:
//   * a sign bit may differ only where the FFTW component is within 2 B_fwd of 0 (the AVX-512 value is within
//     2 B_fwd of it, so it can only have the other sign there);
//   * a group's stored scale (mean |X| over the group, summed in double, rounded to fp32 then to the scale dtype)
//     may differ by at most the mean of 2 B_fwd over the group plus one ulp of the scale dtype and two of fp32
//     (each side rounds twice, by at most half an ulp each time; the second fp32 ulp covers the double sums);
//   * decoded values: the two decoders on the same bytes differ by at most 2 B_inv (of that row's decoded
//     spectrum); on the two encoders' bytes additionally by the change of the decoded spectrum,
//     (1/n) * sum over components of |dY| (complex), or with the bins 1 .. n/2-1 counted twice (real: the
//     Hermitian completion), which is how much a spectrum change can move any inverse-FFT output.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "catch.h"
#include "sign_fft_exact.h"
#include "test_registry.h"
#include "quantizer_test_helpers.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/quantization/group_format.h"
#include "vidkv/quantization/simd/cpu_features.h"

using namespace vidkv;
using namespace vidkv::test;
using namespace vidkv::test::sign_fft_exact;

namespace {

constexpr double kU = 0x1p-24;  // unit roundoff of fp32

const char* kind_name(SignFft k) { return k == SignFft::complex ? "complex" : "real"; }

// Rows of mixed character: gaussian, one large channel, all zero, signed zeros, constant, and with `extreme`
// tiny (1e-20) and huge (1e20) ones (beyond fp16 scales, so not for the quantizer).
std::vector<float> test_rows(std::int64_t rows, std::int64_t width, std::uint64_t seed, bool extreme = true) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * width));
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * width;
    const int type = static_cast<int>(r % (extreme ? 7 : 5));
    for (std::int64_t c = 0; c < width; ++c) {
      float v = g(rng);
      if (type == 1 && c == 3) v *= 1000.0f;
      if (type == 2) v = 0.0f;
      if (type == 3 && c % 3 == 0) v = (c % 2) ? -0.0f : 0.0f;
      if (type == 4) v = 0.75f;
      if (type == 5) v *= 1e-20f;
      if (type == 6) v *= 1e20f;
      row[c] = v;
    }
  }
  return x;
}

// The stored bins of a row of components: complex: Y_k, k < n; real: X_0, (X_k, k = 1 .. n/2-1), X_{n/2}.
std::vector<std::complex<double>> stored_bins(SignFft kind, const float* c, std::int64_t n) {
  std::vector<std::complex<double>> b;
  if (kind == SignFft::complex) {
    for (std::int64_t k = 0; k < n; ++k) b.emplace_back(c[2 * k], c[2 * k + 1]);
    return b;
  }
  b.emplace_back(c[0], 0.0);
  for (std::int64_t k = 1; 2 * k < n; ++k) b.emplace_back(c[2 * k - 1], c[2 * k]);
  b.emplace_back(c[n - 1], 0.0);
  return b;
}

double l1(const float* x, std::int64_t n) {
  double s = 0;
  for (std::int64_t j = 0; j < n; ++j) s += std::fabs(double(x[j]));
  return s;
}

// (2/n) sum |stored bins|: the inverse bound's mass.
double inverse_mass(SignFft kind, const float* c, std::int64_t n) {
  double s = 0;
  for (const auto& v : stored_bins(kind, c, n)) s += std::abs(v);
  return 2.0 * s / double(n);
}

// How far any inverse output can move when the components change by d (the inverse is linear; see the top).
double inverse_lipschitz(SignFft kind, const float* d, std::int64_t n) {
  double s = 0;
  if (kind == SignFft::complex) return l1(d, 2 * n) / double(n);
  s = std::fabs(double(d[0])) + std::fabs(double(d[n - 1]));
  for (std::int64_t i = 1; i + 1 < n; ++i) s += 2.0 * std::fabs(double(d[i]));
  return s / double(n);
}

// Worst ratio |value - expected| / bound of a check, with where it happened.
struct Worst {
  double ratio = 0;
  std::string where;
  void see(double err, double bound, const std::string& what) {
    const double r = bound > 0 ? err / bound : (err > 0 ? INFINITY : 0.0);
    if (r > ratio || (std::isnan(err) && where.empty())) ratio = std::isnan(err) ? INFINITY : r, where = what;
  }
};

std::string at(std::int64_t row, std::int64_t comp, double got, double want, double bound) {
  std::ostringstream s;
  s << "row " << row << " component " << comp << ": got " << got << ", expected " << want << ", bound " << bound;
  return s.str();
}

}  // namespace

TEST_CASE("AVX-512 sign FFT applies to power-of-two widths 16 .. 128 only", "[sign][fft][optimized][avx512]") {
  if (!simd::avx512_kernels()) VIDKV_SKIP("AVX-512 kernels not usable on this machine (or VIDKV_CPU_KERNELS=portable)");
  for (SignFft kind : {SignFft::real, SignFft::complex}) {
    for (std::int64_t n : {16, 32, 64, 128}) CHECK(fft_avx512_applies(kind, n));
    for (std::int64_t n : {1, 2, 8, 12, 20, 48, 96, 100, 256}) CHECK_FALSE(fft_avx512_applies(kind, n));
  }
  CHECK_FALSE(fft_avx512_applies(SignFft::off, 64));
}

TEST_CASE("AVX-512 sign FFT forward and inverse are within the derived bound of the exact DFT and of FFTW",
          "[sign][fft][optimized][avx512]") {
  if (!simd::avx512_kernels()) VIDKV_SKIP("AVX-512 kernels not usable on this machine (or VIDKV_CPU_KERNELS=portable)");
  constexpr float kGuard = -777.0f;
  std::uint64_t seed = 71000;
  for (SignFft kind : {SignFft::real, SignFft::complex}) {
    for (std::int64_t n : {16, 32, 64, 128}) {
      for (std::int64_t rows : {1, 15, 16, 37}) {
        ++seed;
        INFO("kind " << kind_name(kind) << ", n " << n << ", rows " << rows << ", seed " << seed);
        REQUIRE(fft_avx512_applies(kind, n));
        const std::int64_t w = fft_components(kind, n);
        const double factor = fft_avx512_error_factor(n);

        // Forward.
        const auto x = test_rows(rows, n, seed);
        std::vector<float> ours(std::size_t(rows * w + 16), kGuard), fftw(std::size_t(rows * w));
        fft_forward_rows_avx512(kind, x.data(), rows, n, ours.data());
        fft_forward_rows(kind, x.data(), rows, n, fftw.data());
        for (std::size_t i = 0; i < 16; ++i) REQUIRE(ours[std::size_t(rows * w) + i] == kGuard);
        Worst vs_exact, fftw_vs_exact, vs_fftw;
        for (std::int64_t r = 0; r < rows; ++r) {
          const auto exact = exact_forward(kind, x.data() + r * n, n);
          const double bound = factor * kU * l1(x.data() + r * n, n);
          for (std::int64_t c = 0; c < w; ++c) {
            const double o = ours[std::size_t(r * w + c)], f = fftw[std::size_t(r * w + c)], e = exact[std::size_t(c)];
            vs_exact.see(std::fabs(o - e), bound, at(r, c, o, e, bound));
            fftw_vs_exact.see(std::fabs(f - e), bound, at(r, c, f, e, bound));
            vs_fftw.see(std::fabs(o - f), 2 * bound, at(r, c, o, f, 2 * bound));
          }
        }
        INFO("forward, AVX-512 vs exact: worst error / bound " << vs_exact.ratio << " at " << vs_exact.where);
        INFO("forward, FFTW vs exact: worst error / bound " << fftw_vs_exact.ratio << " at " << fftw_vs_exact.where);
        INFO("forward, AVX-512 vs FFTW: worst difference / 2 bound " << vs_fftw.ratio << " at " << vs_fftw.where);
        REQUIRE(vs_exact.ratio <= 1.0);
        REQUIRE(fftw_vs_exact.ratio <= 1.0);
        REQUIRE(vs_fftw.ratio <= 1.0);

        // Inverse, on FFTW's spectra of the rows (wide dynamic range) and on sign-quantized-like spectra.
        for (int spectra = 0; spectra < 2; ++spectra) {
          std::vector<float> c = fftw;
          if (spectra == 1) {
            std::mt19937_64 rng(seed * 31 + 7);
            for (auto& v : c) v = (rng() % 3 == 0) ? 0.0f : ((rng() & 1) ? 0.8125f : -0.8125f);
          }
          std::vector<float> y(std::size_t(rows * n + 16), kGuard), yf(std::size_t(rows * n));
          fft_inverse_rows_avx512(kind, c.data(), rows, n, y.data());
          fft_inverse_rows(kind, c.data(), rows, n, yf.data());
          for (std::size_t i = 0; i < 16; ++i) REQUIRE(y[std::size_t(rows * n) + i] == kGuard);
          Worst inv_exact, inv_fftw_exact, inv_fftw;
          for (std::int64_t r = 0; r < rows; ++r) {
            const auto exact = exact_inverse(kind, c.data() + r * w, n);
            const double bound = factor * kU * inverse_mass(kind, c.data() + r * w, n);
            for (std::int64_t j = 0; j < n; ++j) {
              const double o = y[std::size_t(r * n + j)], f = yf[std::size_t(r * n + j)], e = exact[std::size_t(j)];
              inv_exact.see(std::fabs(o - e), bound, at(r, j, o, e, bound));
              inv_fftw_exact.see(std::fabs(f - e), bound, at(r, j, f, e, bound));
              inv_fftw.see(std::fabs(o - f), 2 * bound, at(r, j, o, f, 2 * bound));
            }
          }
          INFO("inverse (spectra " << spectra << "), AVX-512 vs exact: worst error / bound " << inv_exact.ratio << " at "
                                   << inv_exact.where);
          INFO("inverse, FFTW vs exact: worst error / bound " << inv_fftw_exact.ratio << " at " << inv_fftw_exact.where);
          INFO("inverse, AVX-512 vs FFTW: worst difference / 2 bound " << inv_fftw.ratio << " at " << inv_fftw.where);
          REQUIRE(inv_exact.ratio <= 1.0);
          REQUIRE(inv_fftw_exact.ratio <= 1.0);
          REQUIRE(inv_fftw.ratio <= 1.0);
        }
      }
    }
  }
}

TEST_CASE("optimized sign with the AVX-512 FFT: bits differ only near 0, scales and decodes within the bound",
          "[sign][fft][optimized][avx512]") {
  if (!simd::avx512_kernels()) VIDKV_SKIP("AVX-512 kernels not usable on this machine (or VIDKV_CPU_KERNELS=portable)");
  using group_format::CodeLayout;
  using group_format::GroupAxis;
  using sign_format::Reconstruction;
  struct Case {
    KeyValues kv;
    SignFft fft;
    GroupAxis axis;
    CodeLayout layout;
    DType sd;
    Reconstruction rec;
    int group;
  };
  const std::vector<Case> cases{
      {{{"fft", "real"}}, SignFft::real, GroupAxis::channel, CodeLayout::dense, DType::f16, Reconstruction::zero_one, 32},
      {{{"fft", "complex"}, {"layout", "release"}}, SignFft::complex, GroupAxis::channel, CodeLayout::release, DType::f16,
       Reconstruction::zero_one, 32},
      {{{"fft", "real"}, {"axis", "token"}, {"scale_dtype", "fp32"}}, SignFft::real, GroupAxis::token, CodeLayout::dense,
       DType::f32, Reconstruction::zero_one, 32},
      {{{"fft", "complex"}, {"reconstruction", "symmetric"}, {"group", "7"}}, SignFft::complex, GroupAxis::channel,
       CodeLayout::dense, DType::f16, Reconstruction::symmetric, 7},
      {{{"fft", "real"}, {"reconstruction", "symmetric"}, {"layout", "release"}}, SignFft::real, GroupAxis::channel,
       CodeLayout::release, DType::f16, Reconstruction::symmetric, 32},
  };
  const std::vector<BlockShape> shapes{{2, 64, 64}, {1, 37, 32}, {1, 40, 128}, {3, 32, 16}};
  const PluginRegistry& ref_registry = test::builtin_registry(CpuImplementation::reference);
  const PluginRegistry& opt_registry = test::builtin_registry(CpuImplementation::optimized);
  std::uint64_t seed = 72000;
  for (const auto& cs : cases) {
    const auto ref = ref_registry.make_quantizer(quantizer_block("sign", cs.kv));
    const auto opt = opt_registry.make_quantizer(quantizer_block("sign", cs.kv));
    for (const auto& shape : shapes) {
      ++seed;
      INFO("sign " << quantizer_block("sign", cs.kv).dump() << ", shape " << shape.str() << ", seed " << seed);
      const std::int64_t n = shape.channels, rows = shape.heads * shape.tokens, w = fft_components(cs.fft, n);
      REQUIRE(fft_avx512_applies(cs.fft, n));
      const double factor = fft_avx512_error_factor(n);
      const auto x = test_rows(rows, n, seed, false);
      const auto ref_bytes = encode(*ref, shape, x);
      const auto opt_bytes = encode(*opt, shape, x);
      REQUIRE(ref_bytes.size() == opt_bytes.size());

      // FFTW's components (the reference quantizes exactly these) and each row's allowed difference 2 B_fwd.
      std::vector<float> X(std::size_t(rows * w));
      fft_forward_rows(cs.fft, x.data(), rows, n, X.data());
      std::vector<double> diff(static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r) diff[std::size_t(r)] = 2 * factor * kU * l1(x.data() + r * n, n);

      const auto g = group_format::make_group_grid(cs.axis, shape.heads, shape.tokens, w, cs.group);
      const std::size_t codes_bytes = sign_format::codes_bytes(cs.layout, g);
      const std::size_t scales_bytes = sign_format::scales_bytes(g, cs.sd);
      const std::uint8_t* ref_scales = ref_bytes.data() + codes_bytes;
      const std::uint8_t* opt_scales = opt_bytes.data() + codes_bytes;
      // The release's zero mins: identical bytes.
      REQUIRE(std::equal(ref_bytes.begin() + std::ptrdiff_t(codes_bytes + scales_bytes), ref_bytes.end(),
                         opt_bytes.begin() + std::ptrdiff_t(codes_bytes + scales_bytes)));
      const double dtype_ulp_rel = cs.sd == DType::f16 ? 0x1p-10 : 0x1p-23;
      Worst bits, scales;
      std::int64_t flipped = 0;
      std::vector<float> y_ref(std::size_t(rows * w)), y_opt(std::size_t(rows * w));  // decoded spectra
      for (std::int64_t h = 0; h < g.heads; ++h)
        for (std::int64_t r = 0; r < g.rows; ++r)
          for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
            const std::int64_t j0 = gi * g.group, len = g.group_size(gi), gidx = g.group_index(h, r, gi);
            const double s_ref = group_format::get_scalar(ref_scales, gidx, cs.sd);
            const double s_opt = group_format::get_scalar(opt_scales, gidx, cs.sd);
            double mean_diff = 0;
            for (std::int64_t j = j0; j < j0 + len; ++j) {
              const std::int64_t i = g.block_offset(h, r, j), row = i / w;
              mean_diff += diff[std::size_t(row)] / double(len);
              const unsigned b_ref = group_format::get_code(cs.layout, ref_bytes.data(), g, 1, h, r, j);
              const unsigned b_opt = group_format::get_code(cs.layout, opt_bytes.data(), g, 1, h, r, j);
              y_ref[std::size_t(i)] = sign_format::decode_value(b_ref, float(s_ref), cs.rec);
              y_opt[std::size_t(i)] = sign_format::decode_value(b_opt, float(s_opt), cs.rec);
              if (b_ref != b_opt) {
                ++flipped;
                const double v = X[std::size_t(i)];
                bits.see(std::fabs(v), diff[std::size_t(row)],
                         "bit of row " + std::to_string(row) + " component " + std::to_string(i % w) + " (FFTW value " +
                             std::to_string(v) + ")");
              }
            }
            // Scale dtype ulp at max(s): 2^(floor(log2 s) - mantissa bits), fp16 subnormals 2^-24.
            const double smax = std::max(std::fabs(s_ref), std::fabs(s_opt));
            const double ulp = smax > 0 ? std::max(std::ldexp(dtype_ulp_rel, std::ilogb(smax)), cs.sd == DType::f16 ? 0x1p-24 : 0.0) : 0.0;
            // One fp32 ulp per side: its rounding of the mean and the (far smaller) error of the double sum.
            const double allowed = mean_diff + ulp + smax * 0x1p-22;
            scales.see(std::fabs(s_ref - s_opt), allowed,
                       "scale of group " + std::to_string(gidx) + ": " + std::to_string(s_ref) + " vs " + std::to_string(s_opt));
          }
      INFO(flipped << " of " << rows * w << " sign bits differ");
      INFO("worst |FFTW component| / 2 B_fwd over the differing bits " << bits.ratio << " at " << bits.where);
      INFO("worst scale difference / allowed " << scales.ratio << " at " << scales.where);
      REQUIRE(bits.ratio <= 1.0);
      REQUIRE(scales.ratio <= 1.0);

      // Decoders: on the same bytes within 2 B_inv; on each encoder's own bytes, plus the spectrum change.
      const auto ref_on_ref = decode(*ref, shape, ref_bytes), opt_on_ref = decode(*opt, shape, ref_bytes);
      const auto ref_on_opt = decode(*ref, shape, opt_bytes), opt_on_opt = decode(*opt, shape, opt_bytes);
      Worst same_bytes, own_bytes;
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* yr = y_ref.data() + r * w;
        const float* yo = y_opt.data() + r * w;
        std::vector<float> dy(static_cast<std::size_t>(w));
        for (std::int64_t c = 0; c < w; ++c) dy[std::size_t(c)] = float(double(yo[c]) - double(yr[c]));
        const double b_ref = factor * kU * inverse_mass(cs.fft, yr, n), b_opt = factor * kU * inverse_mass(cs.fft, yo, n);
        const double lip = inverse_lipschitz(cs.fft, dy.data(), n) * (1 + 0x1p-20);  // dy rounded to fp32
        for (std::int64_t j = 0; j < n; ++j) {
          const std::size_t i = std::size_t(r * n + j);
          same_bytes.see(std::fabs(double(opt_on_ref[i]) - ref_on_ref[i]), 2 * b_ref,
                         at(r, j, opt_on_ref[i], ref_on_ref[i], 2 * b_ref) + " (reference's bytes)");
          same_bytes.see(std::fabs(double(opt_on_opt[i]) - ref_on_opt[i]), 2 * b_opt,
                         at(r, j, opt_on_opt[i], ref_on_opt[i], 2 * b_opt) + " (optimised bytes)");
          own_bytes.see(std::fabs(double(opt_on_opt[i]) - ref_on_ref[i]), lip + b_ref + b_opt,
                        at(r, j, opt_on_opt[i], ref_on_ref[i], lip + b_ref + b_opt));
        }
      }
      INFO("decoders on the same bytes: worst difference / 2 B_inv " << same_bytes.ratio << " at " << same_bytes.where);
      INFO("each on its own bytes: worst difference / bound " << own_bytes.ratio << " at " << own_bytes.where);
      REQUIRE(same_bytes.ratio <= 1.0);
      REQUIRE(own_bytes.ratio <= 1.0);
    }
  }
}
