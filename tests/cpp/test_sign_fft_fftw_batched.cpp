// FFTW's batched channel FFT (plugins/quantizers/sign/sign_fft_fftw_batched.{h,cpp}) against the exact DFT (double)
// and the reference's per-row FFTW plans, with the library bound of sign_fft_tolerance.h (u = 2^-24):
//   forward  |X^_k - X_k| <= forward_bound(n, ||x||_2) = E(n) sqrt(n) ||x||_2                 (x: the token row)
//   inverse  |x^_j - x_j| <= inverse_bound(n, ||y||_2) = (E(n) + 3u) sqrt(2/n) ||y||_2   (y: its stored components)
// Both FFTW paths obey it, so they differ by at most twice it. Lengths: powers of two (the AVX-512 range and
// beyond), 2 * 3 * 7 = 42 (mixed radices), 1, 2 and the prime 131 (FFTW's generic / Rader codelets); row counts
// below, at and above one batch (kFftwBatchRows = 64) so the short last chunk's plan runs too.
#include <cmath>
#include <complex>
#include <cstdint>
#include <random>
#include <vector>

#include "catch.h"
#include "sign_fft_exact.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_fftw_batched.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tolerance.h"

using namespace vidkv;
using namespace vidkv::test::sign_fft_exact;

namespace {

double l2(const float* x, std::int64_t n) {
  double s = 0;
  for (std::int64_t j = 0; j < n; ++j) s += double(x[j]) * double(x[j]);
  return std::sqrt(s);
}

}  // namespace

TEST_CASE("FFTW batched sign FFT is within the library bound of the exact DFT and of the per-row reference",
          "[sign][fft][fftw-batched]") {
  std::uint64_t seed = 91000;
  for (SignFft kind : {SignFft::real, SignFft::complex}) {
    for (std::int64_t n : {1, 2, 16, 42, 64, 128, 131, 256}) {
      for (std::int64_t rows : {1, 63, 64, 130}) {
        ++seed;
        INFO("kind " << (kind == SignFft::complex ? "complex" : "real") << ", n " << n << ", rows " << rows << ", seed " << seed);
        const std::int64_t w = fft_components(kind, n);
        std::mt19937_64 rng(seed);
        std::normal_distribution<float> g(0.0f, 1.0f);
        std::vector<float> x(std::size_t(rows * n));
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i % 7 == 3) ? 1000.0f * g(rng) : g(rng);
        if (rows > 1) std::fill(x.begin() + n, x.begin() + 2 * n, 0.0f);  // an all-zero token: exactly zero out
        std::vector<float> ours(std::size_t(rows * w) + 8, -777.0f), ref(std::size_t(rows * w));
        fft_forward_rows_fftw_batched(kind, x.data(), rows, n, ours.data());
        fft_forward_rows(kind, x.data(), rows, n, ref.data());
        for (std::size_t i = 0; i < 8; ++i) REQUIRE(ours[std::size_t(rows * w) + i] == -777.0f);  // nothing past the end
        double worst = 0, worst_ref = 0;
        for (std::int64_t r = 0; r < rows; ++r) {
          const auto e = exact_forward(kind, x.data() + r * n, n);
          const double b = sign_fft_tolerance::forward_bound(n, l2(x.data() + r * n, n));
          for (std::int64_t c = 0; c < w; ++c) {
            const double o = ours[std::size_t(r * w + c)];
            if (b == 0) REQUIRE(o == 0.0);
            else worst = std::max(worst, std::fabs(o - e[std::size_t(c)]) / b),
                 worst_ref = std::max(worst_ref, std::fabs(o - ref[std::size_t(r * w + c)]) / (2 * b));
          }
        }
        INFO("forward: worst error / bound vs exact " << worst << ", vs reference / 2 bound " << worst_ref);
        REQUIRE(worst <= 1.0);
        REQUIRE(worst_ref <= 1.0);

        // Inverse on sign-quantized-like spectra (non-Hermitian for the complex kind: Re of the inverse is tested).
        std::vector<float> y(std::size_t(rows * w));
        for (auto& v : y) v = (rng() % 3 == 0) ? 0.0f : ((rng() & 1) ? 0.8125f : -0.8125f);
        std::vector<float> xo(std::size_t(rows * n) + 8, -777.0f), xr(std::size_t(rows * n));
        fft_inverse_rows_fftw_batched(kind, y.data(), rows, n, xo.data());
        fft_inverse_rows(kind, y.data(), rows, n, xr.data());
        for (std::size_t i = 0; i < 8; ++i) REQUIRE(xo[std::size_t(rows * n) + i] == -777.0f);
        double inv = 0, inv_ref = 0;
        for (std::int64_t r = 0; r < rows; ++r) {
          const auto e = exact_inverse(kind, y.data() + r * w, n);
          const double b = sign_fft_tolerance::inverse_bound(n, l2(y.data() + r * w, w));
          for (std::int64_t j = 0; j < n; ++j) {
            const double o = xo[std::size_t(r * n + j)];
            if (b == 0) REQUIRE(o == 0.0);
            else inv = std::max(inv, std::fabs(o - e[std::size_t(j)]) / b),
                 inv_ref = std::max(inv_ref, std::fabs(o - xr[std::size_t(r * n + j)]) / (2 * b));
          }
        }
        INFO("inverse: worst error / bound vs exact " << inv << ", vs reference / 2 bound " << inv_ref);
        REQUIRE(inv <= 1.0);
        REQUIRE(inv_ref <= 1.0);
      }
    }
  }
}
