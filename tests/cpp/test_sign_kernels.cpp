// sign's kernel tables (plugins/quantizers/sign/sign_kernels.h): every group entry against the reference entry,
// called directly (so the portable tier is compared on a machine with AVX-512 too); every transform entry flagged
// exact bit-identical to the reference's transform (the derived bounds of the inexact ones are tested in
// test_sign_fft_avx512.cpp / test_sign_fft_fftw_batched.cpp); choose() per implementation and FFT tier; encode /
// decode running exactly the chosen pair; tier() naming it with the names provenance.json and fingerprints carry.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/cpu_fft_tier.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/sign/sign_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/plugins/quantizers/sign/sign_kernels.h"

using namespace vidkv;
using namespace vidkv::test;
using group_format::CodeLayout;
using group_format::GroupAxis;
using sign_format::Reconstruction;

namespace {

std::size_t bytes_of(const SignParams& p, const group_format::GroupGrid& g) {
  return static_cast<std::size_t>(sign_format::codes_bytes(p.layout, g) + sign_format::scales_bytes(g, p.scale_dtype) +
                                  sign_format::zero_points_bytes(p.layout, g, p.scale_dtype));
}

std::vector<std::uint8_t> encode_with(const sign_kernels::CpuKernels& k, const SignParams& p,
                                      const group_format::GroupGrid& g, const std::vector<float>& values) {
  std::vector<std::uint8_t> out(bytes_of(p, g), 0);
  k.encode(p, g, values.data(), out.data());
  return out;
}

std::vector<float> decode_with(const sign_kernels::CpuKernels& k, const SignParams& p, const group_format::GroupGrid& g,
                               const std::vector<std::uint8_t>& b) {
  std::vector<float> out(static_cast<std::size_t>(g.elements()));
  k.decode(p, g, b.data(), out.data());
  return out;
}

}  // namespace

TEST_CASE("sign group table: every CPU entry writes the reference entry's bytes and decodes to its values",
          "[quantizer][sign][optimized]") {
  // Grids over the values (the FFT is a separate stage): both axes, tails (the grouped axis not a multiple of G),
  // G = 32 with whole groups (where the AVX-512 entry applies, axis channel), fp16 / fp32 scales, dense / release
  // codes, both reconstructions; Gaussian values and the same rounded to integers (zeros and -0: bit 1, x >= 0).
  const std::vector<BlockShape> shapes{{2, 64, 48}, {1, 37, 20}, {3, 96, 64}};
  int avx512_cases = 0;
  std::uint64_t seed = 31;
  for (const int group : {32, 7})
    for (const auto axis : {GroupAxis::channel, GroupAxis::token})
      for (const auto rec : {Reconstruction::zero_one, Reconstruction::symmetric})
        for (const DType sd : {DType::f16, DType::f32})
          for (const auto layout : {CodeLayout::dense, CodeLayout::release})
            for (const auto& s : shapes) {
              const SignParams p{group, axis, rec, SignFft::off, sd, layout};
              const auto g = sign_kernels::values_grid(p, s);
              auto x = gaussian(static_cast<std::size_t>(s.elements()), ++seed, 2.0f);
              auto rounded = x;
              for (auto& v : rounded) v = std::nearbyint(v);
              for (const auto* values : {&x, &rounded}) {
                const auto want = encode_with(sign_kernels::reference, p, g, *values);
                const auto want_values = decode_with(sign_kernels::reference, p, g, want);
                std::vector<const sign_kernels::CpuKernels*> entries{&sign_kernels::optimized};
                if (sign_avx512::applies(g, axis, sd)) {
                  entries.push_back(&sign_kernels::avx512);
                  ++avx512_cases;
                }
                for (const auto* k : entries) {
                  INFO("tier " << k->tier << ", G " << group << ", axis " << (axis == GroupAxis::channel ? "channel" : "token")
                               << ", shape [" << s.heads << ", " << s.tokens << ", " << s.channels << "], rounded "
                               << (values == &rounded));
                  CHECK(encode_with(*k, p, g, *values) == want);
                  CHECK(decode_with(*k, p, g, want) == want_values);
                }
              }
            }
  const auto whole = group_format::make_group_grid(GroupAxis::channel, 1, 64, 48, 32);
  if (sign_avx512::applies(whole, GroupAxis::channel, DType::f16)) CHECK(avx512_cases > 0);
}

TEST_CASE("sign transform table: entries flagged exact give the reference transform's bits, the others stay close",
          "[quantizer][sign][fft]") {
  using sign_kernels::Transform;
  CHECK(sign_kernels::transform_off.exact);
  CHECK(sign_kernels::transform_off.forward == nullptr);
  for (const SignFft kind : {SignFft::real, SignFft::complex})
    for (const std::int64_t n : {5, 16, 64, 96, 128}) {
      const std::int64_t rows = 40, m = fft_components(kind, n);
      const auto x = gaussian(static_cast<std::size_t>(rows * n), static_cast<std::uint64_t>(n), 1.0f);
      std::vector<float> want(static_cast<std::size_t>(rows * m)), want_back(x.size());
      fft_forward_rows(kind, x.data(), rows, n, want.data());
      fft_inverse_rows(kind, want.data(), rows, n, want_back.data());
      for (const Transform* t : {&sign_kernels::transform_fftw, &sign_kernels::transform_avx512,
                                 &sign_kernels::transform_fftw_batched}) {
        if (t == &sign_kernels::transform_avx512 && !fft_avx512_applies(kind, n)) continue;
        INFO("transform " << t->name << ", n " << n << ", kind " << (kind == SignFft::real ? "real" : "complex"));
        std::vector<float> got(want.size()), back(x.size());
        t->forward(kind, x.data(), rows, n, got.data());
        t->inverse(kind, want.data(), rows, n, back.data());
        if (t->exact) {
          CHECK(got == want);
          CHECK(back == want_back);
        } else {
          // Not the reference's bits, but the same transform: a loose closeness check (a forward swapped for an
          // inverse or a wrong kind fails it); the derived bounds: test_sign_fft_avx512.cpp, _fftw_batched.cpp.
          double diff = 0.0, diff_back = 0.0;
          for (std::size_t i = 0; i < got.size(); ++i) diff = std::max(diff, double(std::fabs(got[i] - want[i])));
          for (std::size_t i = 0; i < back.size(); ++i) diff_back = std::max(diff_back, double(std::fabs(back[i] - want_back[i])));
          CHECK(diff <= 1e-4 * static_cast<double>(n));
          CHECK(diff_back <= 1e-4);
        }
      }
    }
  CHECK(sign_kernels::transform_fftw.exact);
  CHECK_FALSE(sign_kernels::transform_avx512.exact);
  CHECK_FALSE(sign_kernels::transform_fftw_batched.exact);
}

TEST_CASE("sign choose(): the reference is always the oracle, the optimised transform follows the FFT tier",
          "[quantizer][sign][fft-tier]") {
  using sign_kernels::Transform;
  const BlockShape whole{2, 96, 64};  // n = 64: the AVX-512 FFT's range; tokens a multiple of 32
  const BlockShape tail{2, 37, 96};   // n = 96: not a power of two; a tail group
  SignParams real{};
  real.fft = SignFft::real;
  for (const CpuFftTier t : all_cpu_fft_tiers()) {
    const ScopedCpuFftTier scoped(t);
    INFO("FFT tier " << cpu_fft_tier_name(t));
    for (const auto& s : {whole, tail}) {
      const auto ref = sign_kernels::choose(CpuImplementation::reference, real, s);
      CHECK(ref.transform == &sign_kernels::transform_fftw);
      CHECK(ref.group == &sign_kernels::reference);
      CHECK(sign_kernels::choose(CpuImplementation::optimized, SignParams{}, s).transform == &sign_kernels::transform_off);
      const auto opt = sign_kernels::choose(CpuImplementation::optimized, real, s);
      const Transform* want = t == CpuFftTier::fftw_batched ? &sign_kernels::transform_fftw_batched
                              : t == CpuFftTier::avx512 && fft_avx512_applies(SignFft::real, s.channels)
                                  ? &sign_kernels::transform_avx512
                                  : &sign_kernels::transform_fftw;
      CHECK(opt.transform == want);
      const bool avx_group = sign_avx512::applies(sign_kernels::values_grid(real, s), real.axis, real.scale_dtype);
      CHECK(opt.group == (avx_group ? &sign_kernels::avx512 : &sign_kernels::optimized));
    }
  }
}

TEST_CASE("sign encode / decode run the chosen pair, tier() names it with the unchanged tier names",
          "[quantizer][sign][fft-tier]") {
  const std::vector<BlockShape> shapes{{2, 96, 64}, {2, 37, 96}, {1, 64, 16}};
  for (const SignFft kind : {SignFft::off, SignFft::real, SignFft::complex})
    for (const CpuFftTier t : all_cpu_fft_tiers())
      for (const auto impl : {CpuImplementation::reference, CpuImplementation::optimized})
        for (const auto& s : shapes) {
          const ScopedCpuFftTier scoped(t);
          SignParams p{};
          p.fft = kind;
          const SignQuantizer q(p, impl);
          const auto k = sign_kernels::choose(impl, p, s);
          const auto g = sign_kernels::values_grid(p, s);
          INFO("fft " << static_cast<int>(kind) << ", FFT tier " << cpu_fft_tier_name(t) << ", reference "
                      << (impl == CpuImplementation::reference) << ", channels " << s.channels);
          const auto x = gaussian(static_cast<std::size_t>(s.elements()), 7, 1.0f);
          // The chosen pair by hand: transform (none for fft off), then the group entry.
          std::vector<float> values = x;
          if (kind != SignFft::off) {
            values.assign(static_cast<std::size_t>(g.elements()), 0.0f);
            k.transform->forward(kind, x.data(), s.heads * s.tokens, s.channels, values.data());
          }
          const auto want = encode_with(*k.group, p, g, values);
          const auto bytes = encode(q, s, x);
          CHECK(bytes == want);
          std::vector<float> want_out = decode_with(*k.group, p, g, bytes);
          if (kind != SignFft::off) {
            std::vector<float> back(x.size());
            k.transform->inverse(kind, want_out.data(), s.heads * s.tokens, s.channels, back.data());
            want_out = back;
          }
          CHECK(decode(q, s, bytes) == want_out);
          // tier(): the pair's name, exact when the transform is.
          const KernelTier tier = q.tier(Device::cpu, s);
          CHECK(tier.name == std::string("sign:") + k.group->tier + k.transform->suffix);
          CHECK(tier.exact == k.transform->exact);
          if (impl == CpuImplementation::reference) CHECK(tier.name == "sign:reference");
        }
}

TEST_CASE("sign tier names are the ones provenance.json and resume fingerprints already carry", "[quantizer][sign][fft-tier]") {
  const BlockShape s{2, 96, 64};  // VidKV's 64 normal key channels, whole groups of 32 tokens
  SignParams real{};
  real.fft = SignFft::real;
  const SignQuantizer opt(real, CpuImplementation::optimized);
  const bool avx_group = sign_avx512::applies(sign_kernels::values_grid(real, s), real.axis, real.scale_dtype);
  const std::string group = avx_group ? "sign:avx512" : "sign:optimized";
  {
    const ScopedCpuFftTier t(CpuFftTier::avx512);
    const bool avx_fft = fft_avx512_applies(SignFft::real, 64);
    CHECK(opt.tier(Device::cpu, s).name == group + (avx_fft ? "+fft-avx512" : ""));
    CHECK(opt.tier(Device::cpu, s).exact == !avx_fft);
  }
  {
    const ScopedCpuFftTier t(CpuFftTier::fftw_batched);
    CHECK(opt.tier(Device::cpu, s).name == group + "+fft-fftw-batched");
    CHECK_FALSE(opt.tier(Device::cpu, s).exact);
  }
  {
    const ScopedCpuFftTier t(CpuFftTier::fftw);
    CHECK(opt.tier(Device::cpu, s).name == group);
    CHECK(opt.tier(Device::cpu, s).exact);
  }
  CHECK(SignQuantizer(SignParams{}, CpuImplementation::optimized).tier(Device::cpu, {2, 37, 64}).name == "sign:optimized");
  CHECK(SignQuantizer(real, CpuImplementation::reference).tier(Device::cpu, s).name == "sign:reference");
  CHECK(opt.tier(Device::cuda, s).name.rfind("sign:cuda", 0) == 0);
}
