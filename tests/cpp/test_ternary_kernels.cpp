// ternary's kernel table (plugins/quantizers/ternary/ternary_kernels.h): every CPU entry against the reference
// entry, called directly (so the portable tier is compared on a machine with AVX-512 too, and the AVX-512 tier
// wherever it takes the configuration), and tier() naming the entry that encode()/decode() run.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/plugins/quantizers/ternary/ternary.h"
#include "vidkv/plugins/quantizers/ternary/ternary_avx512.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"
#include "vidkv/plugins/quantizers/ternary/ternary_kernels.h"

using namespace vidkv;
using namespace vidkv::test;
using ternary_format::Packing;
using ternary_format::Reconstruction;

namespace {

struct Case {
  TernaryParams p;
  BlockShape shape;
};

// Configurations that reach every branch of the optimised tiers: both axes, tails (the grouped axis not a multiple
// of G), G = 32 with whole groups (where the AVX-512 tier applies for axis channel, magnitude_free, base3 /
// slots2), packings base3 / slots2 / release, reconstructions magnitude_free / scaled, fp16 and fp32 scales,
// gamma 0.7 (paper) and 0.5 (release).
std::vector<Case> cases() {
  std::vector<Case> out;
  const std::vector<BlockShape> shapes{{2, 64, 48}, {1, 37, 20}, {3, 96, 64}};
  for (const double gamma : {0.7, 0.5})
    for (const int group : {32, 7})
      for (const auto axis : {group_format::GroupAxis::channel, group_format::GroupAxis::token})
        for (const auto rec : {Reconstruction::magnitude_free, Reconstruction::scaled})
          for (const auto packing : {Packing::base3, Packing::slots2, Packing::release})
            for (const DType sd : {DType::f16, DType::f32})
              for (const auto& s : shapes) out.push_back({TernaryParams{gamma, group, axis, rec, packing, sd}, s});
  return out;
}

using ternary_kernels::CpuKernels;

group_format::GroupGrid grid_of(const Case& c) {
  return group_format::make_group_grid(c.p.axis, c.shape.heads, c.shape.tokens, c.shape.channels, c.p.group);
}

std::vector<std::uint8_t> encode_with(const CpuKernels& k, const Case& c, const std::vector<float>& x) {
  const auto g = grid_of(c);
  const auto& p = c.p;
  std::vector<std::uint8_t> out(ternary_format::total_bytes(p.packing, p.reconstruction, g, p.scale_dtype), 0);
  k.encode(p, g, x.data(), out.data());
  return out;
}

std::vector<float> decode_with(const CpuKernels& k, const Case& c, const std::vector<std::uint8_t>& b) {
  std::vector<float> out(static_cast<std::size_t>(c.shape.elements()));
  k.decode(c.p, grid_of(c), b.data(), out.data());
  return out;
}

}  // namespace

TEST_CASE("ternary kernel table: every CPU entry writes the reference entry's bytes and decodes to its values",
          "[quantizer][ternary][optimized]") {
  int avx512_cases = 0;
  std::uint64_t seed = 23;
  for (const auto& c : cases()) {
    // Two inputs: Gaussian, and the same rounded to integers (many equal |x|, so values fall on the dead zone
    // a = gamma * mean|x| and on either side of it; all-zero groups, whose scaled magnitude is 0).
    auto x = gaussian(static_cast<std::size_t>(c.shape.elements()), ++seed, 3.0f);
    auto rounded = x;
    for (auto& v : rounded) v = std::nearbyint(v);
    for (const auto* input : {&x, &rounded}) {
      const auto want = encode_with(ternary_kernels::reference, c, *input);
      const auto want_values = decode_with(ternary_kernels::reference, c, want);
      std::vector<const CpuKernels*> entries{&ternary_kernels::optimized};
      if (ternary_avx512::applies(grid_of(c), c.p.axis, c.p.reconstruction, c.p.packing)) {
        entries.push_back(&ternary_kernels::avx512);
        ++avx512_cases;
      }
      for (const auto* k : entries) {
        INFO("tier " << k->tier << ", gamma " << c.p.gamma << ", G " << c.p.group << ", axis "
                     << (c.p.axis == group_format::GroupAxis::channel ? "channel" : "token") << ", packing "
                     << static_cast<int>(c.p.packing) << ", scaled "
                     << (c.p.reconstruction == Reconstruction::scaled) << ", shape [" << c.shape.heads << ", "
                     << c.shape.tokens << ", " << c.shape.channels << "], rounded " << (input == &rounded));
        CHECK(encode_with(*k, c, *input) == want);
        CHECK(decode_with(*k, c, want) == want_values);
      }
    }
  }
  // On a processor with AVX-512 the configurations above include ones it takes (axis channel, G = 32, whole
  // groups, magnitude_free, base3 / slots2).
  const auto whole = group_format::make_group_grid(group_format::GroupAxis::channel, 1, 64, 48, 32);
  if (ternary_avx512::applies(whole, group_format::GroupAxis::channel, Reconstruction::magnitude_free, Packing::base3))
    CHECK(avx512_cases > 0);
}

TEST_CASE("ternary tier() names the kernel table entry that runs", "[quantizer][ternary]") {
  const BlockShape whole{2, 64, 48};  // tokens a multiple of 32: the AVX-512 tier's configuration at G = 32
  const BlockShape tail{2, 37, 48};   // a tail group: never the AVX-512 tier
  TernaryParams scaled{};
  scaled.reconstruction = Reconstruction::scaled;  // never the AVX-512 tier
  TernaryParams token{};
  token.axis = group_format::GroupAxis::token;  // never the AVX-512 tier
  TernaryParams release{};
  release.packing = Packing::release;  // never the AVX-512 tier
  for (const TernaryParams& p : {TernaryParams{}, scaled, token, release}) {
    for (const auto impl : {CpuImplementation::reference, CpuImplementation::optimized}) {
      const TernaryQuantizer q(p, impl);
      for (const auto& s : {whole, tail}) {
        const auto g = group_format::make_group_grid(p.axis, s.heads, s.tokens, s.channels, p.group);
        const auto& chosen = ternary_kernels::choose(impl, p, g);
        CHECK(q.tier(Device::cpu, s).name == std::string("ternary:") + chosen.tier);
        CHECK(q.tier(Device::cpu, s).exact);
        if (impl == CpuImplementation::reference) CHECK(&chosen == &ternary_kernels::reference);
      }
      CHECK(q.tier(Device::cuda, whole).name == "ternary:cuda");
    }
  }
  const TernaryQuantizer opt(TernaryParams{}, CpuImplementation::optimized);
  CHECK(opt.tier(Device::cpu, tail).name == "ternary:optimized");
  for (const TernaryParams& p : {scaled, token, release})
    CHECK(TernaryQuantizer(p, CpuImplementation::optimized).tier(Device::cpu, whole).name == "ternary:optimized");
  const bool avx = ternary_avx512::applies(group_format::make_group_grid(group_format::GroupAxis::channel, 2, 64, 48, 32),
                                           group_format::GroupAxis::channel, Reconstruction::magnitude_free, Packing::base3);
  CHECK(opt.tier(Device::cpu, whole).name == (avx ? "ternary:avx512" : "ternary:optimized"));
}
