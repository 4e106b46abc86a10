// uniform's kernel table (plugins/quantizers/uniform/uniform_kernels.h): every CPU entry against the reference
// entry, called directly (so the portable tier is compared on a machine with AVX-512 too, and the AVX-512 tier
// wherever it takes the configuration), and tier() naming the entry that encode()/decode() run.
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"
#include "vidkv/plugins/quantizers/uniform/uniform_avx512.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_kernels.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

struct Case {
  UniformParams p;
  BlockShape shape;
};

// Configurations that reach every branch of the optimised tiers: both axes, tails (the grouped axis not a multiple
// of G), G = 32 with whole groups (where the AVX-512 tier applies for bits 1/2/4/8), odd bit widths (dense only),
// fp16 and fp32 metadata, dense and release codes.
std::vector<Case> cases() {
  std::vector<Case> out;
  const std::vector<BlockShape> shapes{{2, 64, 48}, {1, 37, 20}, {3, 96, 64}};
  for (const int bits : {1, 2, 3, 4, 8})
    for (const int group : {32, 7})
      for (const auto axis : {group_format::GroupAxis::channel, group_format::GroupAxis::token})
        for (const DType sd : {DType::f16, DType::f32})
          for (const auto layout : {group_format::CodeLayout::dense, group_format::CodeLayout::release}) {
            const bool release = layout == group_format::CodeLayout::release;
            if (release && !group_format::release_bits_ok(static_cast<unsigned>(bits))) continue;
            for (const auto& s : shapes) out.push_back({UniformParams{bits, group, axis, sd, layout}, s});
          }
  return out;
}

using uniform_kernels::CpuKernels;

std::vector<std::uint8_t> encode_with(const CpuKernels& k, const Case& c, const std::vector<float>& x) {
  const auto g = group_format::make_group_grid(c.p.axis, c.shape.heads, c.shape.tokens, c.shape.channels, c.p.group);
  const auto bits = static_cast<unsigned>(c.p.bits);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(uniform_format::codes_bytes(c.p.layout, g, bits) +
                                                         2 * uniform_format::scales_bytes(g, c.p.scale_dtype)),
                                0);
  k.encode(c.p, g, x.data(), out.data());
  return out;
}

std::vector<float> decode_with(const CpuKernels& k, const Case& c, const std::vector<std::uint8_t>& b) {
  const auto g = group_format::make_group_grid(c.p.axis, c.shape.heads, c.shape.tokens, c.shape.channels, c.p.group);
  std::vector<float> out(static_cast<std::size_t>(c.shape.elements()));
  k.decode(c.p, g, b.data(), out.data());
  return out;
}

}  // namespace

TEST_CASE("uniform kernel table: every CPU entry writes the reference entry's bytes and decodes to its values",
          "[quantizer][uniform][optimized]") {
  int avx512_cases = 0;
  std::uint64_t seed = 11;
  for (const auto& c : cases()) {
    const auto x = gaussian(static_cast<std::size_t>(c.shape.elements()), ++seed, 3.0f);
    const auto want = encode_with(uniform_kernels::reference, c, x);
    const auto want_values = decode_with(uniform_kernels::reference, c, want);
    const auto g = group_format::make_group_grid(c.p.axis, c.shape.heads, c.shape.tokens, c.shape.channels, c.p.group);
    std::vector<const uniform_kernels::CpuKernels*> entries{&uniform_kernels::optimized};
    if (uniform_avx512::applies(g, static_cast<unsigned>(c.p.bits), c.p.scale_dtype)) {
      entries.push_back(&uniform_kernels::avx512);
      ++avx512_cases;
    }
    for (const auto* k : entries) {
      INFO("tier " << k->tier << ", bits " << c.p.bits << ", G " << c.p.group << ", axis "
                   << (c.p.axis == group_format::GroupAxis::channel ? "channel" : "token") << ", shape ["
                   << c.shape.heads << ", " << c.shape.tokens << ", " << c.shape.channels << "]");
      CHECK(encode_with(*k, c, x) == want);
      CHECK(decode_with(*k, c, want) == want_values);
    }
  }
  // On a processor with AVX-512 the configurations above include ones it takes (G = 32, whole groups).
  const auto whole = group_format::make_group_grid(group_format::GroupAxis::channel, 1, 64, 48, 32);
  if (uniform_avx512::applies(whole, 2, DType::f16)) CHECK(avx512_cases > 0);
}

TEST_CASE("uniform tier() names the kernel table entry that runs", "[quantizer][uniform]") {
  const BlockShape whole{2, 64, 48};  // tokens a multiple of 32: the AVX-512 tier's configuration at G = 32
  const BlockShape tail{2, 37, 48};   // a tail group: never the AVX-512 tier
  const UniformParams p{};            // bits 2, G 32, axis channel, fp16, dense
  for (const auto impl : {CpuImplementation::reference, CpuImplementation::optimized}) {
    const UniformQuantizer q(p, impl);
    for (const auto& s : {whole, tail}) {
      const auto g = group_format::make_group_grid(p.axis, s.heads, s.tokens, s.channels, p.group);
      const auto& chosen = uniform_kernels::choose(impl, p, g);
      CHECK(q.tier(Device::cpu, s).name == std::string("uniform:") + chosen.tier);
      CHECK(q.tier(Device::cpu, s).exact);
      if (impl == CpuImplementation::reference) CHECK(&chosen == &uniform_kernels::reference);
    }
    CHECK(q.tier(Device::cuda, whole).name == "uniform:cuda");
  }
  const UniformQuantizer opt(p, CpuImplementation::optimized);
  CHECK(opt.tier(Device::cpu, tail).name == "uniform:optimized");
  const bool avx = uniform_avx512::applies(group_format::make_group_grid(p.axis, 2, 64, 48, 32), 2, DType::f16);
  CHECK(opt.tier(Device::cpu, whole).name == (avx ? "uniform:avx512" : "uniform:optimized"));
}
