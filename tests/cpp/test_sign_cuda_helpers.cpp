// The host / device helpers of sign's CUDA paths, tested on the CPU (tag [cpu]; no GPU needed):
//   sign_fft_tile.h       the fused kernels' per-token transform: bit-identical to the AVX-512 transform (where
//                         this machine has it) and within fft_avx512_error_factor's bound of the exact DFT;
//   sign_fft_bins.h       the component <-> R2C / C2R half-spectrum maps of the cuFFT path, against the component
//                         orders of sign_fft.h computed independently from the exact DFT;
//   sign_fft_tolerance.h  the library-FFT bound: FFTW (the reference's transform) is within it of the exact DFT
//                         for lengths with small and large prime factors (cuFFT is checked on the GPU,
//                         test_cuda_sign.cpp);
//   sign_cuda.h           the choice of path and tier names;
//   sign_fft_compare.h    the comparison helper: it accepts the CPU optimised path's AVX-512 FFT bytes (the same
//                         transform as the fused kernels) and rejects a flipped bit far from 0 and a wrong scale.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "quantizer_test_helpers.h"
#include "sign_fft_compare.h"
#include "sign_fft_exact.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/sign/sign_cuda.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_bins.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tile.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tolerance.h"
#include "vidkv/quantization/simd/cpu_features.h"

using namespace vidkv;
using namespace vidkv::test;
namespace cmp = vidkv::test::sign_fft_compare;
using namespace vidkv::test::sign_fft_exact;

namespace {

constexpr double kU = 0x1p-24;

// Rows of mixed character: gaussian, one large channel, all zero, signed zeros, constant.
std::vector<float> rows_of(std::int64_t rows, std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * n));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < n; ++c) {
      float v = g(rng);
      const int type = static_cast<int>(r % 5);
      if (type == 1 && c == 3 % n) v *= 1000.0f;
      if (type == 2) v = 0.0f;
      if (type == 3 && c % 3 == 0) v = (c % 2) ? -0.0f : 0.0f;
      if (type == 4) v = 0.75f;
      x[static_cast<std::size_t>(r * n + c)] = v;
    }
  return x;
}

const char* kind_name(SignFft k) { return k == SignFft::complex ? "complex" : "real"; }

// The tile transform of sign_fft_tile.h on the host, for rows of n = 2N channels.
template <int N>
void tile_rows(bool forward, SignFft kind, const float* in, std::int64_t rows, float* out) {
  const auto tw = sign_fft_tile::make_twiddles();
  const std::int64_t n = 2 * N, w = fft_components(kind, n);
  for (std::int64_t r = 0; r < rows; ++r) {
    if (forward) {
      const float* x = in + r * n;
      float* o = out + r * w;
      auto load = [&](int c) { return x[c]; };
      auto store = [&](int c, float v) { o[c] = v; };
      if (kind == SignFft::complex) sign_fft_tile::forward_row<N, true>(load, store, tw);
      else sign_fft_tile::forward_row<N, false>(load, store, tw);
    } else {
      const float* y = in + r * w;
      float* o = out + r * n;
      auto load = [&](int c) { return y[c]; };
      auto store = [&](int j, float v) { o[j] = v; };
      if (kind == SignFft::complex) sign_fft_tile::inverse_row<N, true>(load, store, tw);
      else sign_fft_tile::inverse_row<N, false>(load, store, tw);
    }
  }
}

// The forward on two halves (forward_half_first_pass / forward_half_finish, as the fused encode kernel runs it on two
// threads per token): both first passes before either finish, and the finishes storing into the loaded row (out
// holds the rows' inputs, n = w for the real kind; for complex, the row is copied to out first and rewritten).
// Each component must be stored exactly once: `count` records the stores.
template <int N, bool Complex>
void forward_halves(const float* in, std::int64_t rows, float* out, std::vector<int>& count) {
  const auto tw = sign_fft_tile::make_twiddles();
  constexpr int n = 2 * N, w = Complex ? 2 * n : n;
  count.assign(std::size_t(rows * w), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    float* o = out + r * w;
    std::copy(in + r * n, in + (r + 1) * n, o);  // the row in place: loads read o[c], c < n
    float re0[N / 2], im0[N / 2], re1[N / 2], im1[N / 2];
    auto load = [&](int c) { return o[c]; };
    sign_fft_tile::forward_half_first_pass<N, 0>(load, re0, im0, tw);
    sign_fft_tile::forward_half_first_pass<N, 1>(load, re1, im1, tw);
    auto store = [&](int c, float v) {
      o[c] = v;
      ++count[std::size_t(r * w + c)];
    };
    sign_fft_tile::forward_half_finish<N, Complex, 1>(re1, im1, store, tw);
    sign_fft_tile::forward_half_finish<N, Complex, 0>(re0, im0, store, tw);
  }
}

void forward_by_halves(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out, std::vector<int>& count) {
  const bool c = kind == SignFft::complex;
  switch (n) {
    case 16: return c ? forward_halves<8, true>(in, rows, out, count) : forward_halves<8, false>(in, rows, out, count);
    case 32: return c ? forward_halves<16, true>(in, rows, out, count) : forward_halves<16, false>(in, rows, out, count);
    case 64: return c ? forward_halves<32, true>(in, rows, out, count) : forward_halves<32, false>(in, rows, out, count);
    case 128: return c ? forward_halves<64, true>(in, rows, out, count) : forward_halves<64, false>(in, rows, out, count);
    default: FAIL("no tile transform for n = " << n);
  }
}

void tile_transform(bool forward, SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  switch (n) {
    case 16: return tile_rows<8>(forward, kind, in, rows, out);
    case 32: return tile_rows<16>(forward, kind, in, rows, out);
    case 64: return tile_rows<32>(forward, kind, in, rows, out);
    case 128: return tile_rows<64>(forward, kind, in, rows, out);
    default: FAIL("no tile transform for n = " << n);
  }
}

}  // namespace

TEST_CASE("sign FFT tile: the fused CUDA kernels' transform is the AVX-512 transform, within its bound of the exact DFT",
          "[cpu][sign][fft]") {
  const bool avx = simd::avx512_kernels();
  std::uint64_t seed = 91000;
  for (SignFft kind : {SignFft::real, SignFft::complex}) {
    for (std::int64_t n : {16, 32, 64, 128}) {
      ++seed;
      INFO("kind " << kind_name(kind) << ", n " << n << ", seed " << seed << ", AVX-512 compared: " << avx);
      CHECK(sign_fft_tile::applies(n));
      const std::int64_t rows = 21, w = fft_components(kind, n);
      const double F = fft_avx512_error_factor(n);
      const auto x = rows_of(rows, n, seed);
      std::vector<float> ours(std::size_t(rows * w)), theirs(std::size_t(rows * w));
      tile_transform(true, kind, x.data(), rows, n, ours.data());
      cmp::Worst fwd;
      for (std::int64_t r = 0; r < rows; ++r) {
        const auto e = exact_forward(kind, x.data() + r * n, n);
        const double bound = F * kU * cmp::l1(x.data() + r * n, n);
        for (std::int64_t c = 0; c < w; ++c)
          fwd.see(std::fabs(ours[std::size_t(r * w + c)] - e[std::size_t(c)]), bound,
                  "row " + std::to_string(r) + " component " + std::to_string(c));
      }
      INFO("forward: worst error / bound " << fwd.ratio << " at " << fwd.where);
      CHECK(fwd.ratio <= 1.0);
      // The same components from the two halves (bit for bit), each stored once.
      std::vector<float> halves(std::size_t(rows * w));
      std::vector<int> stores;
      forward_by_halves(kind, x.data(), rows, n, halves.data(), stores);
      CHECK(std::memcmp(ours.data(), halves.data(), ours.size() * sizeof(float)) == 0);
      CHECK(std::all_of(stores.begin(), stores.end(), [](int k) { return k == 1; }));
      if (avx) {
        fft_forward_rows_avx512(kind, x.data(), rows, n, theirs.data());
        CHECK(std::memcmp(ours.data(), theirs.data(), ours.size() * sizeof(float)) == 0);
      }

      // Inverse, on the forward's spectra and on sign-quantized-like spectra (0, +-s).
      for (int spectra = 0; spectra < 2; ++spectra) {
        std::vector<float> y = ours;
        if (spectra == 1) {
          std::mt19937_64 rng(seed * 13 + 5);
          for (auto& v : y) v = (rng() % 3 == 0) ? 0.0f : ((rng() & 1) ? 0.8125f : -0.8125f);
        }
        std::vector<float> back(std::size_t(rows * n)), back_avx(std::size_t(rows * n));
        tile_transform(false, kind, y.data(), rows, n, back.data());
        cmp::Worst inv;
        for (std::int64_t r = 0; r < rows; ++r) {
          const auto e = exact_inverse(kind, y.data() + r * w, n);
          const double bound = F * kU * (2.0 / double(n)) * cmp::stored_bins_l1(kind, y.data() + r * w, n);
          for (std::int64_t j = 0; j < n; ++j)
            inv.see(std::fabs(back[std::size_t(r * n + j)] - e[std::size_t(j)]), bound,
                    "row " + std::to_string(r) + " channel " + std::to_string(j));
        }
        INFO("inverse (spectra " << spectra << "): worst error / bound " << inv.ratio << " at " << inv.where);
        CHECK(inv.ratio <= 1.0);
        if (avx) {
          fft_inverse_rows_avx512(kind, y.data(), rows, n, back_avx.data());
          CHECK(std::memcmp(back.data(), back_avx.data(), back.size() * sizeof(float)) == 0);
        }
      }
    }
  }
  for (std::int64_t n : {1, 8, 12, 48, 96, 256}) CHECK_FALSE(sign_fft_tile::applies(n));
}

TEST_CASE("sign FFT bins: components read from and written to a real transform's half spectrum", "[cpu][sign][fft]") {
  std::uint64_t seed = 92000;
  for (SignFft kind : {SignFft::real, SignFft::complex}) {
    for (std::int64_t n : {1, 2, 3, 4, 5, 8, 9, 16, 17, 30, 64}) {
      ++seed;
      INFO("kind " << kind_name(kind) << ", n " << n);
      const auto x = rows_of(1, n, seed);
      const auto X = exact_dft(x.data(), n);
      // The half spectrum as an R2C transform leaves it (bins 0 .. n/2), rounded to fp32.
      std::vector<float> half(std::size_t(2 * sign_fft_bins::half_bins(n)));
      for (std::int64_t k = 0; k < sign_fft_bins::half_bins(n); ++k) {
        half[std::size_t(2 * k)] = float(X[std::size_t(k)].real());
        half[std::size_t(2 * k + 1)] = float(X[std::size_t(k)].imag());
      }
      const auto want = exact_forward(kind, x.data(), n);
      REQUIRE(std::int64_t(want.size()) == fft_components(kind, n));
      for (std::int64_t c = 0; c < fft_components(kind, n); ++c) {
        const double got = sign_fft_bins::component(kind, n, half.data(), c);
        INFO("component " << c << ": got " << got << ", want " << want[std::size_t(c)]);
        CHECK(std::fabs(got - want[std::size_t(c)]) <= 1e-5 * (1.0 + std::fabs(want[std::size_t(c)])));
      }

      // Decode: the C2R of inverse_bin's half spectrum (1/n folded in) is the reference's inverse of the components.
      std::mt19937_64 rng(seed + 1);
      std::normal_distribution<float> g(0.0f, 1.0f);
      std::vector<float> y(std::size_t(fft_components(kind, n)));
      for (auto& v : y) v = g(rng);
      std::vector<std::complex<double>> H(static_cast<std::size_t>(n));
      for (std::int64_t k = 0; k < sign_fft_bins::half_bins(n); ++k) {
        const auto b = sign_fft_bins::inverse_bin(kind, n, k, 1.0f / float(n), [&](std::int64_t c) { return y[std::size_t(c)]; });
        H[std::size_t(k)] = {b.re, b.im};
        if (k > 0 && n - k != k) H[std::size_t(n - k)] = std::conj(H[std::size_t(k)]);
        if (k == 0 || 2 * k == n) CHECK(b.im == 0.0f);
      }
      const auto want_x = exact_inverse(kind, y.data(), n);
      for (std::int64_t j = 0; j < n; ++j) {
        std::complex<double> acc = 0;
        for (std::int64_t k = 0; k < n; ++k) acc += H[std::size_t(k)] * std::polar(1.0, 2.0 * kPi * double((j * k) % n) / double(n));
        INFO("channel " << j << ": C2R of the bins " << acc.real() << ", reference inverse " << want_x[std::size_t(j)]);
        CHECK(std::fabs(acc.real() - want_x[std::size_t(j)]) <= 1e-5 * (1.0 + std::fabs(want_x[std::size_t(j)])));
      }
    }
  }
  // Golden maps (sign_fft_bins.h), n = 8: real c = 0, 1, 2, 7 -> Re X0, Re X1, Im X1, Re X4; complex c = 13 -> Im X6 =
  // -Im X2.
  CHECK(sign_fft_bins::component_bin(SignFft::real, 8, 0).bin == 0);
  CHECK(sign_fft_bins::component_bin(SignFft::real, 8, 2).imag);
  CHECK(sign_fft_bins::component_bin(SignFft::real, 8, 2).bin == 1);
  CHECK(sign_fft_bins::component_bin(SignFft::real, 8, 7).bin == 4);
  CHECK_FALSE(sign_fft_bins::component_bin(SignFft::real, 8, 7).imag);
  CHECK(sign_fft_bins::component_bin(SignFft::complex, 8, 13).bin == 2);
  CHECK(sign_fft_bins::component_bin(SignFft::complex, 8, 13).sign == -1.0f);
}

TEST_CASE("library FFT bound: FFTW is within sign_fft_tolerance of the exact DFT for any n", "[cpu][sign][fft]") {
  // Golden: n = 2 has one radix-2 stage plus the split stage, eta(2) = sqrt(2) * 9 u, E = 1.01 ((1 + eta)^2 - 1).
  const double eta2 = std::sqrt(2.0) * 9.0 * kU;
  CHECK(std::fabs(sign_fft_tolerance::library_fft_error_factor(2) / (1.01 * (2 * eta2 + eta2 * eta2)) - 1.0) < 1e-9);
  CHECK(sign_fft_tolerance::largest_prime_factor(254) == 127);
  CHECK(sign_fft_tolerance::largest_prime_factor(257) == 257);
  CHECK(sign_fft_tolerance::largest_prime_factor(1) == 1);
  // Bluestein lengths get the larger factor.
  CHECK(sign_fft_tolerance::library_fft_error_factor(131) > sign_fft_tolerance::library_fft_error_factor(128));

  std::uint64_t seed = 93000;
  for (SignFft kind : {SignFft::real, SignFft::complex}) {
    for (std::int64_t n : {1, 2, 3, 5, 7, 12, 15, 16, 17, 31, 48, 60, 63, 64, 96, 97, 100, 127, 128, 131, 200, 257}) {
      ++seed;
      INFO("kind " << kind_name(kind) << ", n " << n << ", E(n) / u " << sign_fft_tolerance::library_fft_error_factor(n) / kU);
      const std::int64_t rows = 10, w = fft_components(kind, n);
      const auto x = rows_of(rows, n, seed);
      std::vector<float> X(std::size_t(rows * w)), back(std::size_t(rows * n));
      fft_forward_rows(kind, x.data(), rows, n, X.data());
      fft_inverse_rows(kind, X.data(), rows, n, back.data());
      cmp::Worst fwd, inv;
      for (std::int64_t r = 0; r < rows; ++r) {
        const auto e = exact_forward(kind, x.data() + r * n, n);
        const double fb = sign_fft_tolerance::forward_bound(n, cmp::l2(x.data() + r * n, n));
        for (std::int64_t c = 0; c < w; ++c) fwd.see(std::fabs(X[std::size_t(r * w + c)] - e[std::size_t(c)]), fb, "row " + std::to_string(r));
        const auto ei = exact_inverse(kind, X.data() + r * w, n);
        const double ib = sign_fft_tolerance::inverse_bound(n, cmp::l2(X.data() + r * w, w));
        for (std::int64_t j = 0; j < n; ++j) inv.see(std::fabs(back[std::size_t(r * n + j)] - ei[std::size_t(j)]), ib, "row " + std::to_string(r));
      }
      INFO("forward worst error / bound " << fwd.ratio << " at " << fwd.where << "; inverse " << inv.ratio << " at " << inv.where);
      CHECK(fwd.ratio <= 1.0);
      CHECK(inv.ratio <= 1.0);
    }
  }
}

TEST_CASE("sign CUDA path: fused tiles for power-of-two widths with word-aligned groups, cuFFT otherwise", "[cpu][sign]") {
  using group_format::GroupAxis;
  using sign_cuda::Config;
  using sign_cuda::Path;
  const Config real64{32, GroupAxis::channel, sign_format::Reconstruction::zero_one, SignFft::real, DType::f16,
                      group_format::CodeLayout::dense};
  // 48 KiB / (65 floats * 4 bytes) = 189 rows, capped at 128 (a multiple of G = 32).
  CHECK(sign_cuda::fused_tile_tokens(real64, 64) == 128);
  // n = 128 real: 48 KiB / (129 * 4) = 95 -> 64; complex: 2n = 256 components, 48 KiB / (257 * 4) = 47 -> 32.
  CHECK(sign_cuda::fused_tile_tokens(real64, 128) == 64);
  Config c = real64;
  c.fft = SignFft::complex;
  CHECK(sign_cuda::fused_tile_tokens(c, 128) == 32);
  c.group = 64;  // 47 rows cannot hold a group of 64 tokens
  CHECK(sign_cuda::fused_tile_tokens(c, 128) == 0);
  c = real64;
  c.group = 7;  // 7 * floor(128 / 7) = 126
  CHECK(sign_cuda::fused_tile_tokens(c, 64) == 126);
  c = real64;
  c.axis = GroupAxis::token;
  CHECK(sign_cuda::fused_tile_tokens(c, 64) == 128);
  CHECK(sign_cuda::fused_tile_tokens(real64, 48) == 0);
  // A gathered encode stages the full input rows too: 128 fp16 channels = 256 bytes more per token, 48 KiB /
  // (260 + 256) = 95 -> 64 tokens; 128 fp32 channels: 48 KiB / (260 + 512) = 63 -> 32; axis token with 4 KiB rows:
  // 48 KiB / (260 + 4096) = 11 -> 8 (a multiple of 4, so that the staging area stays 16-byte aligned).
  CHECK(sign_cuda::fused_tile_tokens(real64, 64, 256) == 64);
  CHECK(sign_cuda::fused_tile_tokens(real64, 64, 512) == 32);
  c = real64;
  c.axis = GroupAxis::token;
  CHECK(sign_cuda::fused_tile_tokens(c, 64, 4096) == 8);
  CHECK(sign_cuda::fused_tile_tokens(real64, 64, 4096) == 0);  // not even one group of 32 tokens fits
  c = real64;
  c.fft = SignFft::off;
  CHECK(sign_cuda::fused_tile_tokens(c, 64) == 0);

  // The choice without, then with the override VIDKV_CUDA_SIGN_FFT=cufft (restored afterwards).
  const char* saved = std::getenv("VIDKV_CUDA_SIGN_FFT");
  const std::string saved_value = saved ? saved : "";
  unsetenv("VIDKV_CUDA_SIGN_FFT");
  CHECK(sign_cuda::path(real64, {4, 4096, 64}) == Path::fft_tile);
  CHECK(sign_cuda::path(real64, {4, 4095, 64}) == Path::cufft);  // a tail group: not word-aligned
  CHECK(sign_cuda::path(real64, {4, 4096, 60}) == Path::cufft);  // not a power of two
  c = real64;
  c.fft = SignFft::off;
  CHECK(sign_cuda::path(c, {4, 4095, 60}) == Path::exact);
  CHECK(std::string(sign_cuda::tier_name(Path::cufft)) == "sign:cuda+cufft");

  const auto fft = make("sign", {{"fft", "real"}});
  const KernelTier t = fft->tier(Device::cuda, {4, 4096, 60});
  CHECK(t.name == "sign:cuda+cufft");
  CHECK_FALSE(t.exact);
  CHECK(fft->tier(Device::cuda, {4, 4096, 64}).name == "sign:cuda+fft-tile");
  const KernelTier off = make("sign")->tier(Device::cuda, {4, 100, 60});
  CHECK(off.name == "sign:cuda");
  CHECK(off.exact);
  CHECK(test::builtin_registry(CpuImplementation::reference).make_quantizer(quantizer_block("sign", {{"fft", "real"}}))->tier(Device::cpu, {1, 8, 64}).exact);

  setenv("VIDKV_CUDA_SIGN_FFT", "cufft", 1);
  CHECK(sign_cuda::path(real64, {4, 4096, 64}) == Path::cufft);
  CHECK(fft->tier(Device::cuda, {4, 4096, 64}).name == "sign:cuda+cufft");
  c = real64;
  c.fft = SignFft::off;
  CHECK(sign_cuda::path(c, {4, 4096, 64}) == Path::exact);
  if (saved) {
    setenv("VIDKV_CUDA_SIGN_FFT", saved_value.c_str(), 1);
  } else {
    unsetenv("VIDKV_CUDA_SIGN_FFT");
  }
}

TEST_CASE("sign FFT comparison helper: accepts the AVX-512 transform's bytes, rejects a far flipped bit and a wrong scale",
          "[cpu][sign][fft]") {
  using group_format::CodeLayout;
  using group_format::GroupAxis;
  CHECK(cmp::bound_of_tier("sign:cuda+fft-tile") == cmp::FftBound::tile);
  CHECK(cmp::bound_of_tier("mixed_channel(uniform:cuda, sign:cuda+fft-tile)") == cmp::FftBound::tile);
  CHECK(cmp::bound_of_tier("sign:cuda+cufft") == cmp::FftBound::library);
  const BlockShape shape{2, 64, 64};
  const auto x = rows_of(shape.heads * shape.tokens, shape.channels, 94001);
  const PluginRegistry& ref_registry = test::builtin_registry(CpuImplementation::reference);
  const PluginRegistry& opt_registry = test::builtin_registry(CpuImplementation::optimized);
  for (const KeyValues& kv : std::vector<KeyValues>{{{"fft", "real"}}, {{"fft", "complex"}, {"layout", "release"}}}) {
    const cmp::Setup st{kv[0].second == "real" ? SignFft::real : SignFft::complex, GroupAxis::channel,
                        kv.size() > 1 ? CodeLayout::release : CodeLayout::dense, DType::f16, sign_format::Reconstruction::zero_one, 32};
    const auto ref = ref_registry.make_quantizer(quantizer_block("sign", kv));
    const auto opt = opt_registry.make_quantizer(quantizer_block("sign", kv));
    const cmp::Setup from_params = cmp::setup_of(dynamic_cast<const SignQuantizer&>(*ref).params());
    CHECK((from_params.fft == st.fft && from_params.layout == st.layout && from_params.axis == st.axis &&
           from_params.scale_dtype == st.scale_dtype && from_params.reconstruction == st.reconstruction && from_params.group == st.group));
    const auto ref_bytes = encode(*ref, shape, x);
    const auto opt_bytes = encode(*opt, shape, x);
    const auto ref_y = decode(*ref, shape, ref_bytes);
    const auto rep = cmp::compare(st, shape, x, ref_bytes, opt_bytes, cmp::FftBound::tile, ref_y, decode(*opt, shape, ref_bytes),
                                  decode(*opt, shape, opt_bytes));
    INFO(quantizer_block("sign", kv).dump() << "\n" << rep.str());
    CHECK(rep.ok());

    // A flipped bit of the first component of token 0 of head 0 (Re X0 = the row's sum, far from 0 for gaussian
    // rows): rejected. Axis channel: component 0 is row 0 of the grid, its bits are the first of the codes.
    const auto g = group_format::make_group_grid(GroupAxis::channel, shape.heads, shape.tokens, fft_components(st.fft, 64), 32);
    auto bad = ref_bytes;
    bad[0] ^= 1u;
    REQUIRE(group_format::get_code(st.layout, bad.data(), g, 1, 0, 0, 0) != group_format::get_code(st.layout, ref_bytes.data(), g, 1, 0, 0, 0));
    CHECK_FALSE(cmp::compare(st, shape, x, ref_bytes, bad, cmp::FftBound::library).ok());
    // A scale 3 fp16 ulps off: rejected.
    bad = ref_bytes;
    const std::size_t s0 = sign_format::codes_bytes(st.layout, g);
    group_format::put_scalar(bad.data() + s0, 0, DType::f16,
                             group_format::get_scalar(bad.data() + s0, 0, DType::f16) * (1.0f + 3.0f * 0x1p-10f) + 0x1p-20f);
    CHECK_FALSE(cmp::compare(st, shape, x, ref_bytes, bad, cmp::FftBound::library).ok());
    // The same bytes: accepted under either bound.
    CHECK(cmp::compare(st, shape, x, ref_bytes, ref_bytes, cmp::FftBound::library, ref_y, ref_y, ref_y).ok());
  }
}

TEST_CASE("sign_format::encode_group (the CUDA encoders' group) writes the reference's bytes on word-aligned grids",
          "[cpu][sign]") {
  using group_format::CodeLayout;
  using group_format::GroupAxis;
  struct Case {
    GroupAxis axis;
    CodeLayout layout;
    DType sd;
    int group;
    BlockShape shape;
  };
  const std::vector<Case> cases{{GroupAxis::channel, CodeLayout::dense, DType::f16, 32, {2, 64, 16}},
                                {GroupAxis::channel, CodeLayout::release, DType::f32, 64, {1, 128, 5}},
                                {GroupAxis::token, CodeLayout::dense, DType::f16, 32, {3, 7, 64}},
                                {GroupAxis::token, CodeLayout::release, DType::f16, 32, {2, 9, 96}}};
  const PluginRegistry& ref_registry = test::builtin_registry(CpuImplementation::reference);
  std::uint64_t seed = 95000;
  for (const auto& cs : cases) {
    const KeyValues kv{{"axis", cs.axis == GroupAxis::channel ? "channel" : "token"},
                       {"layout", cs.layout == CodeLayout::dense ? "dense" : "release"},
                       {"scale_dtype", cs.sd == DType::f16 ? "fp16" : "fp32"},
                       {"group", std::to_string(cs.group)}};
    INFO(quantizer_block("sign", kv).dump() << ", shape " << cs.shape.str());
    const auto g = group_format::make_group_grid(cs.axis, cs.shape.heads, cs.shape.tokens, cs.shape.channels, cs.group);
    REQUIRE(group_format::word_aligned_groups(cs.layout, g, 1));
    const auto x = rows_of(cs.shape.heads * cs.shape.tokens, cs.shape.channels, ++seed);
    const auto want = encode(*ref_registry.make_quantizer(quantizer_block("sign", kv)), cs.shape, x);
    std::vector<std::uint8_t> got(want.size(), 0xAB);  // poisoned: every byte must be written
    std::uint8_t* scales = got.data() + sign_format::codes_bytes(cs.layout, g);
    std::uint8_t* mins = cs.layout == CodeLayout::release ? scales + sign_format::scales_bytes(g, cs.sd) : nullptr;
    auto store = [&](std::int64_t w, std::uint32_t word) { group_format::put_word(got.data(), w, word); };
    for (std::int64_t h = 0; h < g.heads; ++h)
      for (std::int64_t r = 0; r < g.rows; ++r)
        for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
          const std::int64_t j0 = gi * g.group;
          sign_format::encode_group<true>(store, scales, mins, g.group_index(h, r, gi), cs.sd,
                                          group_format::code_word(cs.layout, g, 1, h, r, j0), j0, g.group_size(gi),
                                          [&](std::int64_t j) { return x[std::size_t(g.block_offset(h, r, j))]; });
        }
    CHECK(got == want);
  }
}
