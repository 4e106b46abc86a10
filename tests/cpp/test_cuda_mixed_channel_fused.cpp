// mixed_channel's fused kernels (mixed_channel_fused.h): when they apply ([cpu]: the refusals and the tier name), and
// on the GPU ([cuda]) bytes and decoded values bit-identical to the unfused path (gather, the children's kernels,
// scatter; selected with VIDKV_CUDA_MIXED_CHANNEL=unfused), and so are the kernels' first versions kept for A / B
// runs (VIDKV_CUDA_FUSED_ENCODE=first, VIDKV_CUDA_FUSED_DECODE=first), over bits, FFT kinds, layouts, group sizes,
// scopes, split fractions, partial tiles, input and output dtypes, and a corrupt mask. The unfused path itself is
// compared with the CPU reference by test_cuda_composites.cpp and test_cuda_sign.cpp (the FFT within its named
// tolerance).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "cuda_test_support.h"
#include "fixture_quantizers.h"
#include "scoped_env.h"
#include "test_registry.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_fused.h"

using namespace vidkv;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

// VIDKV_CUDA_MIXED_CHANNEL set (nullptr: unset) for a scope.
struct MixedChannelEnv : test::ScopedEnv {
  explicit MixedChannelEnv(const char* value) : test::ScopedEnv("VIDKV_CUDA_MIXED_CHANNEL", value) {}
};

struct Case {
  std::string scope, fraction, bits, high_layout, fft, low_layout, low_group, reconstruction;
  std::string scale_dtype = "fp16";  // both children's
  std::int64_t channels = 128;
};

ConfigNode codec(const Case& c) {
  return map({{"type", scalar("mixed_channel")},
              {"selector", map({{"type", scalar("range")}, {"scope", scalar(c.scope)}, {"fraction", scalar(c.fraction)}})},
              {"high", map({{"type", scalar("uniform")}, {"bits", scalar(c.bits)}, {"group", scalar("32")},
                            {"axis", scalar("channel")}, {"layout", scalar(c.high_layout)}, {"scale_dtype", scalar(c.scale_dtype)}})},
              {"low", map({{"type", scalar("sign")}, {"group", scalar(c.low_group)}, {"axis", scalar("channel")},
                           {"fft", scalar(c.fft)}, {"layout", scalar(c.low_layout)},
                           {"reconstruction", scalar(c.reconstruction)}, {"scale_dtype", scalar(c.scale_dtype)}})}});
}

// mixed_channel_fused's launch counters in CUDA builds (the [cuda] cases skip before reading them in the others):
// every fused launch, and those of the kernels' first versions.
struct LaunchCounts {
  std::int64_t fused = 0, first = 0;
};
LaunchCounts launch_counts() {
#ifdef VIDKV_WITH_CUDA
  return {mixed_channel_fused::launches(), mixed_channel_fused::first_version_launches()};
#else
  return {};
#endif
}
std::int64_t fused_launches() { return launch_counts().fused; }
std::int64_t first_launches() { return launch_counts().first; }

const PluginRegistry& registry() { return test::builtin_registry(CpuImplementation::optimized); }

// Keys-like values: Gaussian channels, every fifth one 8x wider (the range selector's high channels).
std::vector<float> key_values(const BlockShape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(s.elements()));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = g(rng) * (static_cast<std::int64_t>(i) % s.channels % 5 == 1 ? 8.0f : 1.0f);
  return x;
}

// Configurations on the fused path: the paper's and the release's keys, other fractions, bits, FFT kinds, groups.
std::vector<Case> fused_cases() {
  return {
      {"layer", "0.5", "2", "dense", "real", "dense", "32", "zero_one"},         // vidkv-k1.5
      {"layer", "0.5", "2", "release", "complex", "release", "32", "zero_one"},  // vidkv-k1.5-release
      {"layer", "0.75", "2", "dense", "real", "dense", "32", "zero_one"},        // vidkv-k1.75 (32 low channels)
      {"head", "0.5", "4", "dense", "real", "dense", "32", "symmetric"},
      {"head", "0.875", "1", "dense", "complex", "dense", "64", "zero_one"},  // 16 low channels, one sign group per tile
      {"layer", "0.5", "8", "release", "real", "release", "64", "symmetric"},
      {"head", "0.5", "2", "release", "complex", "release", "32", "zero_one"},  // the release layout, one part per head
      {"layer", "0.5", "2", "dense", "real", "dense", "32", "zero_one", "fp32"},  // fp32 metadata
      {"layer", "0.5", "2", "dense", "real", "dense", "32", "zero_one", "fp16", 64},   // head_dim 64 (SmolLM2)
      {"head", "0.5", "2", "dense", "real", "dense", "32", "zero_one", "fp16", 256},   // 128 low channels
      // 192 channels, 128 high: rows of 24 (fp16) or 48 (fp32) output vectors, the general loop of write_rows
      {"layer", "0.6667", "2", "dense", "real", "dense", "32", "zero_one", "fp16", 192},
  };
}
// 352 tokens: a partial last tile; 32: a tile of one row group. Sign groups of 64 tokens run fused where they divide
// the token count (the sign tile's word-aligned groups).
std::vector<BlockShape> fused_shapes(const Case& c) {
  const std::int64_t d = c.channels;
  if (c.low_group != "32") return {{4, 256, d}, {2, 384, d}};
  return {{4, 256, d}, {2, 352, d}, {1, 32, d}};
}

}  // namespace

TEST_CASE("mixed_channel_fused::refusal names what keeps the fused kernels from a split", "[cpu][mixed_channel]") {
  mixed_channel_fused::Children c;
  c.high.bits = 2;
  c.high.group = 32;
  c.high.axis = group_format::GroupAxis::channel;
  c.low.group = 32;
  c.low.axis = group_format::GroupAxis::channel;
  c.low.fft = SignFft::real;
  const MixedChannelEnv env(nullptr);
  const BlockShape s{4, 256, 128};
  CHECK(mixed_channel_fused::refusal(c, s, 64) == nullptr);
  CHECK(mixed_channel_fused::refusal(c, s, 96) == nullptr);   // 32 low channels
  CHECK(mixed_channel_fused::refusal(c, s, 0) != nullptr);    // one side only
  CHECK(mixed_channel_fused::refusal(c, s, 128) != nullptr);
  CHECK(mixed_channel_fused::refusal(c, s, 63) != nullptr);   // 65 low channels: no fused FFT tile (and odd k)
  CHECK(mixed_channel_fused::refusal(c, s, 32) != nullptr);   // 96 low channels: cuFFT's path
  CHECK(mixed_channel_fused::refusal(c, {4, 250, 128}, 64) != nullptr);  // a partial uniform group
  CHECK(mixed_channel_fused::refusal(c, {4, 256, 124}, 60) != nullptr);  // D % 8 != 0
  CHECK(mixed_channel_fused::refusal(c, {4, 256, 256}, 192) == nullptr);  // decode tiles 64 x (193 + 65) x 4 bytes + slots: 67 KB
  // 1024 channels, 896 high: the decode's fp32 tiles take 64 x (897 + 129) x 4 bytes = 257 KB, beyond a CTA's shared memory
  CHECK(mixed_channel_fused::decode_shared_bytes(1024, 896, 128) == 64 * (897 + 129) * 4 + 4096);
  CHECK(mixed_channel_fused::refusal(c, {4, 256, 1024}, 896) != nullptr);
  {
    auto d = c;
    d.high.bits = 3;
    CHECK(mixed_channel_fused::refusal(d, s, 64) != nullptr);
    d = c;
    d.high.axis = group_format::GroupAxis::token;
    CHECK(mixed_channel_fused::refusal(d, s, 64) != nullptr);
    d = c;
    d.low.fft = SignFft::off;
    CHECK(mixed_channel_fused::refusal(d, s, 64) != nullptr);
    d = c;
    d.low.group = 48;  // does not divide the 64-token tile
    CHECK(mixed_channel_fused::refusal(d, s, 64) != nullptr);
    d.low.group = 128;
    CHECK(mixed_channel_fused::refusal(d, s, 64) != nullptr);
  }
  const std::vector<std::uint8_t> bytes(64);
  alignas(16) static std::uint16_t values[16];
  CHECK(mixed_channel_fused::encode_refusal(c, s, 64, DType::f16, values, bytes.data(), bytes.data()) == nullptr);
  CHECK(mixed_channel_fused::encode_refusal(c, s, 64, DType::f32, values, bytes.data(), bytes.data()) != nullptr);
  CHECK(mixed_channel_fused::encode_refusal(c, s, 64, DType::f16, values + 1, bytes.data(), bytes.data()) != nullptr);
  CHECK(mixed_channel_fused::decode_refusal(c, s, 64, DType::f32, values, bytes.data(), bytes.data() + 1) != nullptr);
  const MixedChannelEnv unfused("unfused");
  CHECK(mixed_channel_fused::refusal(c, s, 64) != nullptr);
}

TEST_CASE("mixed_channel's CUDA tier names the fused kernels where they apply", "[cpu][mixed_channel]") {
  const MixedChannelEnv env(nullptr);
  const Case paper{"layer", "0.5", "2", "dense", "real", "dense", "32", "zero_one"};
  auto q = registry().make_quantizer(codec(paper));
  CHECK(q->tier(Device::cuda, {4, 256, 128}).name == "mixed_channel:fused(uniform:cuda, sign:cuda+fft-tile)");
  CHECK_FALSE(q->tier(Device::cuda, {4, 256, 128}).exact);  // the FFT: within the sign tile's tolerance
  CHECK(q->tier(Device::cuda, {4, 250, 128}).name == "mixed_channel(uniform:cuda, sign:cuda+cufft)");  // partial groups
  for (const Case& c : fused_cases())
    for (const BlockShape& s : fused_shapes(c)) {
      INFO("scope " << c.scope << " fraction " << c.fraction << " bits " << c.bits << " fft " << c.fft << " shape " << s.str());
      CHECK(registry().make_quantizer(codec(c))->tier(Device::cuda, s).name.rfind("mixed_channel:fused(", 0) == 0);
    }
  const MixedChannelEnv unfused("unfused");
  CHECK(q->tier(Device::cuda, {4, 256, 128}).name == "mixed_channel(uniform:cuda, sign:cuda+fft-tile)");
}

TEST_CASE("mixed_channel's fused kernels give the unfused path's bytes and decoded values bit for bit",
          "[cuda][mixed_channel]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  for (const Case& c : fused_cases()) {
    auto q = registry().make_quantizer(codec(c));
    for (const BlockShape& s : fused_shapes(c)) {
      {
        const MixedChannelEnv env(nullptr);
        INFO("scope " << c.scope << " fraction " << c.fraction << " bits " << c.bits << " fft " << c.fft << " low group "
                      << c.low_group << " shape " << s.str());
        REQUIRE(q->tier(Device::cuda, s).name.rfind("mixed_channel:fused(", 0) == 0);
      }
      const std::size_t bytes = q->layout(s, {}).bytes();
      for (DType in : {DType::f16, DType::bf16}) {
        INFO("scope " << c.scope << " fraction " << c.fraction << " bits " << c.bits << " fft " << c.fft << " low group "
                      << c.low_group << " shape " << s.str() << " input " << dtype_name(in));
        const std::vector<std::uint8_t> values = test::to_dtype_bytes(key_values(s, 7 + static_cast<std::uint64_t>(s.tokens)), in);
        const DeviceBuffer d_in = test::upload(values);
        const auto encode = [&](const char* env_value) {
          const MixedChannelEnv env(env_value);
          const DeviceBuffer d_out = test::poisoned(bytes);
          const std::int64_t before = fused_launches();
          q->encode_view(test::view_of(d_in.data(), in, Device::cuda, s), {}, d_out.as<std::uint8_t>(), Execution::cuda());
          synchronize();
          CHECK((fused_launches() > before) == (env_value == nullptr));  // the path the tier names ran
          return test::download(d_out.data(), bytes);
        };
        const std::int64_t first_before = first_launches();
        const std::vector<std::uint8_t> fused = encode(nullptr), unfused = encode("unfused");
        CHECK(first_launches() == first_before);  // neither ran a first version
        CHECK(test::first_difference(fused, unfused) == -1);
        {  // the encode kernel's first version, kept for A / B runs
          const test::ScopedEnv first("VIDKV_CUDA_FUSED_ENCODE", "first");
          const std::int64_t before = first_launches();
          CHECK(test::first_difference(encode(nullptr), fused) == -1);
          CHECK(first_launches() > before);  // the switch took effect
        }
        const DeviceBuffer d_bytes = test::upload(fused);
        for (DType out : test::all_dtypes()) {
          INFO("output " << dtype_name(out));
          const std::size_t out_bytes = static_cast<std::size_t>(s.elements() * dtype_size(out));
          const auto decode = [&](const char* env_value) {
            const MixedChannelEnv env(env_value);
            const DeviceBuffer d_out = test::poisoned(out_bytes);
            const std::int64_t before = fused_launches();
            q->decode_view(d_bytes.as<std::uint8_t>(), {}, test::view_of(d_out.data(), out, Device::cuda, s), Execution::cuda());
            synchronize();
            CHECK((fused_launches() > before) == (env_value == nullptr));
            return test::download(d_out.data(), out_bytes);
          };
          const std::int64_t decode_first_before = first_launches();
          const std::vector<std::uint8_t> a = decode(nullptr), b = decode("unfused");
          CHECK(first_launches() == decode_first_before);
          CHECK(test::first_difference(a, b) == -1);
          const test::ScopedEnv first("VIDKV_CUDA_FUSED_DECODE", "first");  // the decode kernel's first version
          const std::int64_t before = first_launches();
          CHECK(test::first_difference(decode(nullptr), b) == -1);
          CHECK(first_launches() > before);
        }
      }
    }
  }
}

TEST_CASE("mixed_channel's fused decode writes NaN for the rows of a corrupt mask, as the scatter does",
          "[cuda][mixed_channel]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const MixedChannelEnv env(nullptr);
  const BlockShape s{2, 256, 128};
  auto q = registry().make_quantizer(codec({"head", "0.5", "2", "dense", "real", "dense", "32", "zero_one"}));
  REQUIRE(q->tier(Device::cuda, s).name.rfind("mixed_channel:fused(", 0) == 0);
  const std::vector<std::uint8_t> values = test::to_dtype_bytes(key_values(s, 3), DType::f16);
  const DeviceBuffer d_in = test::upload(values);
  const std::size_t bytes = q->layout(s, {}).bytes();
  const DeviceBuffer d_enc = test::poisoned(bytes);
  q->encode_view(test::view_of(d_in.data(), DType::f16, Device::cuda, s), {}, d_enc.as<std::uint8_t>(), Execution::cuda());
  synchronize();
  std::vector<std::uint8_t> packed = test::download(d_enc.data(), bytes);
  std::size_t low_channel = 0;  // head 1's mask gets one channel too many
  while (mixed_channel_format::mask_get(packed.data(), 128, 1, low_channel)) ++low_channel;
  mixed_channel_format::mask_set(packed.data(), 128, 1, low_channel);
  const DeviceBuffer d_bytes = test::upload(packed);
  const std::size_t out_bytes = static_cast<std::size_t>(s.elements()) * 2;
  const auto decode = [&](const char* env_value) {
    const MixedChannelEnv e(env_value);
    const DeviceBuffer d_out = test::poisoned(out_bytes);
    q->decode_view(d_bytes.as<std::uint8_t>(), {}, test::view_of(d_out.data(), DType::f16, Device::cuda, s), Execution::cuda());
    synchronize();
    return test::download(d_out.data(), out_bytes);
  };
  const std::vector<std::uint8_t> fused = decode(nullptr);
  CHECK(test::first_difference(fused, decode("unfused")) == -1);
  {
    const test::ScopedEnv first("VIDKV_CUDA_FUSED_DECODE", "first");  // the tables from the mask bytes in global memory
    const std::int64_t before = first_launches();
    CHECK(test::first_difference(fused, decode(nullptr)) == -1);
    CHECK(first_launches() > before);
  }
  const std::vector<float> out = test::from_dtype_bytes(fused, DType::f16);
  std::size_t finite_head0 = 0, nan_head1 = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i < out.size() / 2) finite_head0 += std::isfinite(out[i]) ? 1 : 0;
    else nan_head1 += std::isnan(out[i]) ? 1 : 0;
  }
  CHECK(finite_head0 == out.size() / 2);
  CHECK(nan_head1 == out.size() / 2);
}
