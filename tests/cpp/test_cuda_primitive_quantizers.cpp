// CUDA vs the CPU reference for the primitive quantizers with a CUDA implementation (uniform, ternary, identity):
// packed bytes and decoded values bit-identical, for fp32, fp16 and bf16 inputs (the reference encodes the same
// values converted exactly to fp32), decoded to fp32, fp16 and bf16, on shapes with tails, odd channel counts and several
// heads, and with the output at offsets 0..3 (so both the word-run and the byte-per-thread code paths run).
// Device buffers are poisoned (0xAB) before each kernel and guard bytes around the output must stay intact.
// [cuda]: skipped, visibly, without a GPU or in a build without CUDA.
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "boundary_values.h"
#include "catch.h"
#include "test_registry.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_half_decode.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

std::unique_ptr<Quantizer> make_reference(const std::string& name, const KeyValues& params) {
  return test::builtin_registry(CpuImplementation::reference).make_quantizer(quantizer_block(name, params));
}

// Index of the first byte where the device buffer `out` differs from `want` (want.size() when none does).
std::size_t first_differing_byte(const std::vector<std::uint8_t>& want, const DeviceBuffer& out) {
  std::vector<std::uint8_t> got(want.size());
  copy_to_host(got.data(), out.data(), got.size());
  std::size_t i = 0;
  while (i < want.size() && want[i] == got[i]) ++i;
  return i;
}

// Values of `x` rounded to `t`, and their raw bits (2 or 4 bytes each) as a device would hold them.
std::vector<std::uint8_t> as_dtype_bytes(std::vector<float>& x, DType t) {
  std::vector<std::uint8_t> raw(x.size() * static_cast<std::size_t>(dtype_size(t)));
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = round_to_dtype(x[i], t);
    store_from_float(raw.data(), t, i, x[i]);
  }
  return raw;
}

void check_on_cuda(const std::string& name, const KeyValues& params, const BlockShape& shape, DType in_dtype,
                   std::size_t out_offset, std::uint64_t seed) {
  auto q = make_reference(name, params);
  const TokenContext ctx;
  std::string described = name;
  for (const auto& [k, v] : params) described += " " + k + "=" + v;
  INFO(described << " shape " << shape.str() << " input " << dtype_name(in_dtype)
            << " output offset " << out_offset);
  auto x = gaussian(static_cast<std::size_t>(shape.elements()), seed);
  for (std::size_t i = 0; i < x.size(); i += 7) x[i] *= 8.0f;  // outliers
  // Signed zeros: every 64th block of 64 elements is +-0 in a pseudo-random sign order (groups whose min and max are
  // zeros of either sign: the reference keeps the first one it meets), and a few zeros among positive values.
  for (std::size_t i = 0; i < x.size(); ++i) {
    if ((i / 64) % 64 == 3) x[i] = ((i * 2654435761u) >> 7) & 1 ? -0.0f : 0.0f;
    if (i % 97 == 5) x[i] = std::fabs(x[i]);
    if (i % 101 == 9) x[i] = (i & 1) ? -0.0f : 0.0f;
  }
  const auto raw = as_dtype_bytes(x, in_dtype);
  const auto want = encode(*q, shape, x, ctx);
  const auto want_decoded = decode(*q, shape, want, ctx);

  constexpr std::size_t kGuard = 16;
  const std::size_t bytes = want.size();
  DeviceBuffer in(raw.size()), out(bytes + out_offset + 2 * kGuard), decoded(x.size() * 4);
  copy_to_device(in.data(), raw.data(), raw.size());
  fill_device(out.data(), 0xAB, out.bytes());
  std::uint8_t* dst = out.as<std::uint8_t>() + kGuard + out_offset;
  const TensorView in_view{in.data(), in_dtype, Device::cuda, {shape.heads, shape.tokens, shape.channels}};
  q->encode_view(in_view, ctx, dst, Execution::cuda());
  std::vector<std::uint8_t> got(out.bytes());
  copy_to_host(got.data(), out.data(), got.size());
  for (std::size_t i = 0; i < kGuard + out_offset; ++i) REQUIRE(got[i] == 0xAB);
  for (std::size_t i = kGuard + out_offset + bytes; i < got.size(); ++i) REQUIRE(got[i] == 0xAB);
  const std::vector<std::uint8_t> got_bytes(got.begin() + std::ptrdiff_t(kGuard + out_offset),
                                            got.begin() + std::ptrdiff_t(kGuard + out_offset + bytes));
  REQUIRE(got_bytes == want);

  for (DType out_dtype : {DType::f32, DType::f16, DType::bf16}) {
    fill_device(decoded.data(), 0xAB, decoded.bytes());
    const TensorView out_view{decoded.data(), out_dtype, Device::cuda, {shape.heads, shape.tokens, shape.channels}};
    q->decode_view(dst, ctx, out_view, Execution::cuda());
    std::vector<std::uint8_t> host(x.size() * static_cast<std::size_t>(dtype_size(out_dtype)));
    copy_to_host(host.data(), decoded.data(), host.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float expect = round_to_dtype(want_decoded[i], out_dtype);
      const float have = load_as_float(host.data(), out_dtype, i);
      if (std::memcmp(&expect, &have, 4) != 0) {
        INFO("element " << i << " expected " << expect << " got " << have << " (" << dtype_name(out_dtype) << ")");
        REQUIRE(false);
      }
    }
  }
}

}  // namespace

TEST_CASE("uniform, ternary and identity on CUDA write the CPU reference's bytes and decode to its values", "[cuda]") {
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  const std::vector<std::pair<std::string, KeyValues>> configs{
      {"identity", {}},
      {"identity", {{"dtype", "bf16"}}},
      {"identity", {{"dtype", "fp32"}}},
      {"uniform", {}},
      {"uniform", {{"bits", "1"}}},
      {"uniform", {{"bits", "3"}, {"group", "7"}}},
      {"uniform", {{"bits", "4"}, {"axis", "token"}}},
      {"uniform", {{"bits", "8"}, {"scale_dtype", "fp32"}}},
      {"uniform", {{"bits", "2"}, {"layout", "release"}}},
      {"uniform", {{"bits", "4"}, {"layout", "release"}, {"axis", "token"}}},
      {"uniform", {{"bits", "1"}, {"layout", "release"}, {"group", "5"}}},
      {"ternary", {}},
      {"ternary", {{"axis", "token"}}},
      {"ternary", {{"packing", "slots2"}}},
      {"ternary", {{"packing", "release"}, {"gamma", "0.5"}}},
      {"ternary", {{"reconstruction", "scaled"}, {"group", "5"}}},
      {"ternary", {{"reconstruction", "scaled"}, {"packing", "release"}, {"axis", "token"}}},
      {"ternary", {{"axis", "token"}, {"packing", "slots2"}, {"scale_dtype", "fp32"}, {"reconstruction", "scaled"}}},
  };
  const std::vector<BlockShape> shapes{{1, 32, 8}, {2, 45, 16}, {1, 7, 3}, {4, 256, 128}, {2, 96, 64}};
  std::uint64_t seed = 7;
  for (const auto& [name, params] : configs)
    for (const auto& shape : shapes)
      for (DType in_dtype : {DType::f32, DType::f16, DType::bf16})
        for (std::size_t offset : {0u, 1u, 2u, 3u}) check_on_cuda(name, params, shape, in_dtype, offset, ++seed);
}

TEST_CASE("uniform in layout fragment on CUDA writes the CPU reference's bytes and decodes to its values", "[cuda]") {
  // Coded in layout dense (fast kernels where they apply) and permuted one byte per thread
  // (group_format::fragment_byte_from_dense; decode: dense_byte_from_fragment into a copy), the channel axis's
  // metadata permuted group-major one entry per thread (group_format::group_major_meta). Channels multiples of
  // 64, token counts with and without a tail after the whole 32-token tiles (45, 100, 7), both axes.
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  const std::vector<KeyValues> configs{{{"layout", "fragment"}},
                                       {{"layout", "fragment"}, {"axis", "token"}},
                                       {{"layout", "fragment"}, {"group", "16"}, {"scale_dtype", "fp32"}}};
  const std::vector<BlockShape> shapes{{1, 32, 64}, {2, 45, 128}, {1, 7, 64}, {4, 256, 128}, {2, 100, 192}};
  std::uint64_t seed = 101;
  for (const auto& params : configs)
    for (const auto& shape : shapes)
      for (DType in_dtype : {DType::f32, DType::f16})
        for (std::size_t offset : {0u, 1u}) check_on_cuda("uniform", params, shape, in_dtype, offset, ++seed);
}

TEST_CASE("sign and ternary in the fragment layout on CUDA write the CPU reference's bytes and decode to its values",
          "[cuda]") {
  // sign layout fragment (1-bit codes; fft off is exact on CUDA, the FFT paths are checked against their tolerance by
  // the dense cases of the tests above: here the same paths run in layout dense, then the permutation) and ternary
  // packing fragment (slots2 coded, then permuted; scaled: the scales group-major on the channel axis): channels
  // multiples of 64, token counts with and without a tail, both axes.
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  const std::vector<std::pair<std::string, KeyValues>> configs{
      {"sign", {{"layout", "fragment"}}},
      {"sign", {{"layout", "fragment"}, {"axis", "token"}, {"scale_dtype", "fp32"}}},
      {"sign", {{"layout", "fragment"}, {"reconstruction", "symmetric"}, {"group", "16"}}},
      {"ternary", {{"packing", "fragment"}}},
      {"ternary", {{"packing", "fragment"}, {"reconstruction", "scaled"}}},
      {"ternary", {{"packing", "fragment"}, {"axis", "token"}, {"reconstruction", "scaled"}, {"group", "16"}}},
  };
  const std::vector<BlockShape> shapes{{1, 32, 64}, {2, 45, 128}, {1, 7, 64}, {4, 256, 128}, {2, 100, 192}};
  std::uint64_t seed = 211;
  for (const auto& [name, params] : configs)
    for (const auto& shape : shapes)
      for (DType in_dtype : {DType::f32, DType::f16})
        for (std::size_t offset : {0u, 1u}) check_on_cuda(name, params, shape, in_dtype, offset, ++seed);
}

TEST_CASE("encode_view on cuda refuses a host view and names the devices", "[cuda]") {
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  auto q = make_reference("uniform", {});
  std::vector<float> x(32 * 8, 1.0f);
  std::vector<std::uint8_t> out(q->layout({1, 32, 8}, {}).bytes());
  const TensorView host{x.data(), DType::f32, Device::cpu, {1, 32, 8}};
  try {
    q->encode_view(host, {}, out.data(), Execution::cuda());
    FAIL("a host view was accepted on cuda");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("the view is on cpu but the call runs on cuda") != std::string::npos);
  }
}

TEST_CASE("encode_view on the cpu takes fp16 and bf16 views and writes the bytes of their fp32 values", "[cpu]") {
  auto q = make_reference("uniform", {{"bits", "4"}});
  const BlockShape s{2, 40, 8};
  for (DType t : {DType::f16, DType::bf16}) {
    auto x = gaussian(static_cast<std::size_t>(s.elements()), 3);
    const auto raw = as_dtype_bytes(x, t);
    const auto want = encode(*q, s, x);
    std::vector<std::uint8_t> got(want.size(), 0xAB);
    q->encode_view(TensorView{const_cast<std::uint8_t*>(raw.data()), t, Device::cpu, {s.heads, s.tokens, s.channels}}, {},
                   got.data(), Execution::cpu());
    CHECK(got == want);
    std::vector<std::uint16_t> back(x.size());
    q->decode_view(got.data(), {}, TensorView{back.data(), t, Device::cpu, {s.heads, s.tokens, s.channels}}, Execution::cpu());
    const auto ref = decode(*q, s, want);
    for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(load_as_float(back.data(), t, i) == round_to_dtype(ref[i], t));
  }
}

TEST_CASE("ternary on CUDA: values on and beside the dead zone get the reference's trits", "[cuda]") {
  // The channel-axis kernel for 2-byte input (ternary.cu encode_channel_warp) compares the values in their own dtype
  // against the dead zone rounded down to it, where the reference compares in double: the same trits by the argument
  // in that comment. Each of the 16 channels of a [1, 128, 16] block (4 groups of 32 tokens per channel, one warp's
  // work) holds the same multiset of |x|: the dtype's value v0 nearest 0.7, its neighbours below and above, each with
  // both signs, and 26 multiples of 1/8, in an order that depends on the channel and group. gamma is chosen so that
  // gamma * mean |x| lands on v0 (v0 / mean, printed with 17 digits) and one double step to either side of that, so
  // the dead zone is exactly v0 or just off it: the values v0 and -v0 sit on the threshold, their neighbours one
  // dtype step away. Checked for fp16 and bf16 inputs and the three packings (magnitude-free).
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  const BlockShape shape{1, 128, 16};
  for (const DType in_dtype : {DType::f16, DType::bf16}) {
    const auto step = [&](float v, int by) {  // the dtype's value `by` steps from positive v
      if (in_dtype == DType::f16) return half_bits_to_float(static_cast<std::uint16_t>(float_to_half_bits(v) + by));
      std::uint32_t u;
      std::memcpy(&u, &v, 4);
      return bf16_bits_to_float(static_cast<std::uint16_t>((u >> 16) + static_cast<std::uint32_t>(by)));
    };
    const float v0 = round_to_dtype(0.7f, in_dtype);
    std::vector<float> base{v0, -v0, step(v0, -1), -step(v0, -1), step(v0, 1), -step(v0, 1)};
    for (int k = 0; base.size() < 32; ++k) base.push_back(static_cast<float>((k % 13) - 6) / 8.0f);
    double sum_abs = 0.0;
    for (float v : base) sum_abs += std::fabs(static_cast<double>(v));
    const double mean = sum_abs / 32.0;
    std::vector<float> x(static_cast<std::size_t>(shape.elements()));
    for (std::int64_t c = 0; c < shape.channels; ++c)
      for (std::int64_t t = 0; t < shape.tokens; ++t)
        x[static_cast<std::size_t>(t * shape.channels + c)] = base[static_cast<std::size_t>((t * 7 + c * 5 + (t / 32) * 3) % 32)];
    const std::vector<std::uint8_t> raw = as_dtype_bytes(x, in_dtype);  // already representable: unchanged
    const double g0 = static_cast<double>(v0) / mean;
    for (const double gamma : {g0, std::nextafter(g0, 0.0), std::nextafter(g0, 2.0)})
      for (const char* packing : {"base3", "slots2", "release"}) {
        char text[64];
        std::snprintf(text, sizeof text, "%.17g", gamma);
        INFO("input " << dtype_name(in_dtype) << " gamma " << text << " packing " << packing);
        auto q = make_reference("ternary", {{"gamma", text}, {"packing", packing}});
        const auto want = encode(*q, shape, x);
        DeviceBuffer in(raw.size()), out(want.size());
        copy_to_device(in.data(), raw.data(), raw.size());
        fill_device(out.data(), 0xAB, out.bytes());
        q->encode_view(TensorView{in.data(), in_dtype, Device::cuda, {shape.heads, shape.tokens, shape.channels}}, {}, out.as<std::uint8_t>(),
                       Execution::cuda());
        const std::size_t first_diff = first_differing_byte(want, out);
        INFO("first differing byte " << first_diff << " of " << want.size());
        REQUIRE(first_diff == want.size());
      }
  }
}

TEST_CASE("ternary on CUDA decodes hand-made bytes as the reference: slot 3, negative, zero and non-finite scales", "[cuda]") {
  // The channel-axis decode writes fp16 / bf16 values by one packed fma per two values (ternary.cu TritPairs) only for
  // groups whose scale rounded to the output dtype is finite and positive and that hold no slot 3; the others go
  // through fp32 as the reference does. Here codes are pseudo-random bytes (every slot value, 3 included) and the fp16
  // scales cycle through +-1.5, +-0, +-inf, NaN, 65504, the smallest subnormal and 0.1; the decoded values must be the
  // reference's rounded to the output dtype (NaN where it is NaN), the sign of zeros included. 16 channels take the
  // kernel's run-time channel count, 128 its compile-time one.
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  for (const BlockShape shape : {BlockShape{1, 64, 16}, BlockShape{2, 96, 128}}) {
    auto q = make_reference("ternary", {{"packing", "slots2"}, {"reconstruction", "scaled"}});
    std::vector<std::uint8_t> bytes(q->layout(shape, {}).bytes());
    const auto g = group_format::make_group_grid(group_format::GroupAxis::channel, shape.heads, shape.tokens, shape.channels, 32);
    const auto sec = ternary_format::sections(ternary_format::Packing::slots2, ternary_format::Reconstruction::scaled, g, DType::f16, bytes.data());
    std::uint32_t state = 12345;
    for (std::uint8_t* b = sec.codes; b < sec.scales; ++b) *b = static_cast<std::uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
    const std::uint16_t scales[] = {0x3E00, 0xBE00, 0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7BFF, 0x0001, 0x2E66};
    for (std::int64_t k = 0; k < g.group_count(); ++k) std::memcpy(sec.scales + 2 * k, &scales[k % 10], 2);
    const std::vector<float> want = decode(*q, shape, bytes);
    DeviceBuffer dev(bytes.size()), back(want.size() * 2);
    copy_to_device(dev.data(), bytes.data(), bytes.size());
    for (const DType out_dtype : {DType::f16, DType::bf16}) {
      fill_device(back.data(), 0xAB, back.bytes());
      q->decode_view(dev.as<std::uint8_t>(), {}, TensorView{back.data(), out_dtype, Device::cuda, {shape.heads, shape.tokens, shape.channels}},
                     Execution::cuda());
      std::vector<std::uint8_t> host(back.bytes());
      copy_to_host(host.data(), back.data(), host.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        const float expect = round_to_dtype(want[i], out_dtype), have = load_as_float(host.data(), out_dtype, i);
        INFO(shape.str() << " " << dtype_name(out_dtype) << " element " << i << " expected " << expect << " got " << have);
        if (std::isnan(expect)) REQUIRE(std::isnan(have));
        else REQUIRE(std::memcmp(&expect, &have, 4) == 0);
      }
    }
  }
}

TEST_CASE("uniform on CUDA writes the reference's codes on and around every rounding boundary", "[cuda]") {
  // The fast path multiplies by the reciprocal and divides only near a boundary k + 0.5 (uniform.cu FastCoder):
  // inputs placed on the boundaries and 1 to 3 ulps around them, on whole groups of 32 (the fast path's shapes).
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  for (const int bits : {1, 2, 4, 8})
    for (const char* axis : {"channel", "token"})
      for (const char* scale_dtype : {"fp16", "fp32"}) {
        const DType sd = std::string(scale_dtype) == "fp16" ? DType::f16 : DType::f32;
        const BoundaryBlock data = boundary_block(bits, std::string(axis) == "channel", sd);
        const BlockShape& shape = data.shape;
        const std::vector<float>& x = data.values;
        INFO("bits " << bits << ", axis " << axis << ", scale_dtype " << scale_dtype);
        auto q = make_reference("uniform", {{"bits", std::to_string(bits)}, {"axis", axis}, {"scale_dtype", scale_dtype}});
        const auto want = encode(*q, shape, x);
        DeviceBuffer in(x.size() * 4), out(want.size());
        copy_to_device(in.data(), x.data(), x.size() * 4);
        fill_device(out.data(), 0xAB, out.bytes());
        q->encode_view(TensorView{in.data(), DType::f32, Device::cuda, {shape.heads, shape.tokens, shape.channels}}, {},
                       out.as<std::uint8_t>(), Execution::cuda());
        const std::size_t first_diff = first_differing_byte(want, out);
        INFO("first differing byte " << first_diff << " of " << want.size());
        REQUIRE(first_diff == want.size());
      }
}

TEST_CASE("uniform on CUDA: fp16 and bf16 blocks through the fast kernels write the reference's bytes and values", "[cuda]") {
  // The 2-byte inputs of the live cache and the bench take encode_channel_tile (channel axis, when qb = 256 / pairs
  // divides the row groups per head: [2, 256, 64] with 8 of 8, [3, 128, 128] with 4 of 4, [1, 320, 48] with 10 of 10
  // (qb * pairs = 240: 16 idle threads), [1, 64, 512] with 1 of 2 (256 pairs)) or encode_channel_fast ([1, 96, 64]:
  // 8 does not divide 3), and encode_token_fast. Groups hold, in turn, boundary_value()s rounded to the dtype, ties
  // mn + (k + 0.5) 2^-2 (exact in fp16; in bf16 those that fit its 8 significant bits: the reciprocal path flags
  // them and the group is coded by the division), and zeros of both signs beside the min (the ordered min / max);
  // values are clamped to +-60000 (fp16's finite range). Finite inputs only: NaN and inf are outside the
  // bit-identity contract (uniform_cuda.h).
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  const std::vector<std::pair<const char*, BlockShape>> cases{
      {"channel", {2, 256, 64}}, {"channel", {3, 128, 128}}, {"channel", {1, 320, 48}}, {"channel", {1, 64, 512}},
      {"channel", {1, 96, 64}},  {"token", {2, 40, 96}}};
  for (const int bits : {1, 2, 4, 8})
    for (const auto& [axis, shape] : cases)
      for (const DType in_dtype : {DType::f16, DType::bf16})
        for (const char* scale_dtype : {"fp16", "fp32"}) {
          const DType sd = std::string(scale_dtype) == "fp16" ? DType::f16 : DType::f32;
          const bool channel_axis = std::string(axis) == "channel";
          std::vector<float> x(static_cast<std::size_t>(shape.elements()));
          for (std::int64_t h = 0; h < shape.heads; ++h)
            for (std::int64_t t = 0; t < shape.tokens; ++t)
              for (std::int64_t c = 0; c < shape.channels; ++c) {
                const std::int64_t row = channel_axis ? c : t, pos = channel_axis ? t : c;
                const auto group = static_cast<std::uint64_t>((h * 1000 + row) * 100 + pos / 32);
                const int j = static_cast<int>(pos % 32);
                float v = boundary_value(group, j, bits, sd);
                if (group % 3 == 1) {  // ties: min -3, step 2^-2 (the stored scale), max -3 + top / 4
                  const float top = static_cast<float>((1u << bits) - 1u);
                  v = j == 0 ? -3.0f : j == 1 ? -3.0f + top * 0.25f : -3.0f + (static_cast<float>((group + static_cast<std::uint64_t>(j)) % (1u << bits)) - 0.5f) * 0.25f;
                  if (v < -3.0f) v = -3.0f;
                } else if (group % 3 == 2 && j >= 2 && j < 6) {
                  v = (j % 2 == 0) ? 0.0f : -0.0f;
                }
                // within fp16's finite range: finite inputs only (above)
                x[static_cast<std::size_t>((h * shape.tokens + t) * shape.channels + c)] = std::fmin(std::fmax(v, -60000.0f), 60000.0f);
              }
          const std::vector<std::uint8_t> raw = as_dtype_bytes(x, in_dtype);  // x now holds the rounded values
          INFO("bits " << bits << ", axis " << axis << " " << shape.str() << ", input " << dtype_name(in_dtype) << ", scale_dtype "
                       << scale_dtype);
          auto q = make_reference("uniform", {{"bits", std::to_string(bits)}, {"axis", axis}, {"scale_dtype", scale_dtype}});
          const auto want = encode(*q, shape, x);
          const auto want_decoded = decode(*q, shape, want);
          DeviceBuffer in(raw.size()), out(want.size()), back(want_decoded.size() * 2);
          copy_to_device(in.data(), raw.data(), raw.size());
          fill_device(out.data(), 0xAB, out.bytes());
          const TensorView in_view{in.data(), in_dtype, Device::cuda, {shape.heads, shape.tokens, shape.channels}};
          q->encode_view(in_view, {}, out.as<std::uint8_t>(), Execution::cuda());
          const std::size_t first_diff = first_differing_byte(want, out);
          INFO("first differing byte " << first_diff << " of " << want.size());
          REQUIRE(first_diff == want.size());
          // decode to fp16: the reference's floats rounded to fp16, bit for bit
          fill_device(back.data(), 0xAB, back.bytes());
          q->decode_view(out.as<std::uint8_t>(), {}, TensorView{back.data(), DType::f16, Device::cuda, {shape.heads, shape.tokens, shape.channels}},
                         Execution::cuda());
          std::vector<std::uint16_t> halves(want_decoded.size());
          copy_to_host(halves.data(), back.data(), halves.size() * 2);
          std::size_t mismatches = 0;
          for (std::size_t i = 0; i < halves.size(); ++i) mismatches += halves[i] != float_to_half_bits(want_decoded[i]);
          REQUIRE(mismatches == 0);
        }
}

TEST_CASE("uniform on CUDA: a NaN in a group leaves the codes of the group's other values the reference's", "[cuda]") {
  // The device append does not refuse non-finite values (uniform_cuda.h). The fast coder's clamp-free loop runs for
  // groups whose min and max allow it, and the min / max trees skip a NaN: without its near test flagging the NaN,
  // the NaN's fp32 bits added into its code word and changed the codes of the other values of that word. One NaN at
  // a position j != 0 of every third group (the reference's ordered scan keeps a NaN met first, the trees do not:
  // outside the contract), fp16 and fp32 input, both axes, 1 to 8 bits: decoded by the CPU reference, every non-NaN
  // element of the device's bytes equals the reference's decode of the block with the NaNs replaced (below).
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  const std::vector<std::pair<const char*, BlockShape>> cases{{"channel", {2, 256, 64}}, {"token", {2, 40, 96}}};
  for (const int bits : {1, 2, 4, 8})
    for (const auto& [axis, shape] : cases)
      for (const DType in_dtype : {DType::f16, DType::f32}) {
        const bool channel_axis = std::string(axis) == "channel";
        auto x = gaussian(static_cast<std::size_t>(shape.elements()), 1234u + static_cast<std::uint64_t>(bits));
        std::vector<bool> is_nan(x.size(), false);
        for (std::int64_t h = 0; h < shape.heads; ++h)
          for (std::int64_t t = 0; t < shape.tokens; ++t)
            for (std::int64_t c = 0; c < shape.channels; ++c) {
              const std::int64_t row = channel_axis ? c : t, pos = channel_axis ? t : c;
              const std::int64_t group = (h * 1000 + row) * 100 + pos / 32;
              if (group % 3 == 0 && pos % 32 == 1 + group % 31) {
                const auto i = static_cast<std::size_t>((h * shape.tokens + t) * shape.channels + c);
                x[i] = std::nanf("");
                is_nan[i] = true;
              }
            }
        const std::vector<std::uint8_t> raw = as_dtype_bytes(x, in_dtype);  // x now holds the rounded values
        // The reference encodes the block with each NaN replaced by its group's first value: the same min, max and
        // stored group as the NaN skipped (and the reference's encode_value is not defined for a NaN).
        std::vector<float> x_ref = x;
        for (std::size_t i = 0; i < x.size(); ++i)
          if (is_nan[i]) {
            const auto c = static_cast<std::int64_t>(i) % shape.channels;
            x_ref[i] = x[channel_axis ? i - static_cast<std::size_t>(((static_cast<std::int64_t>(i) / shape.channels) % 32) * shape.channels)
                                      : i - static_cast<std::size_t>(c % 32)];
          }
        INFO("bits " << bits << ", axis " << axis << " " << shape.str() << ", input " << dtype_name(in_dtype));
        auto q = make_reference("uniform", {{"bits", std::to_string(bits)}, {"axis", axis}, {"scale_dtype", "fp16"}});
        const auto want = decode(*q, shape, encode(*q, shape, x_ref));
        DeviceBuffer in(raw.size()), out(q->layout(shape, {}).bytes());
        copy_to_device(in.data(), raw.data(), raw.size());
        fill_device(out.data(), 0xAB, out.bytes());
        q->encode_view(TensorView{in.data(), in_dtype, Device::cuda, {shape.heads, shape.tokens, shape.channels}}, {},
                       out.as<std::uint8_t>(), Execution::cuda());
        std::vector<std::uint8_t> got_bytes(out.bytes());
        copy_to_host(got_bytes.data(), out.data(), got_bytes.size());
        const auto got = decode(*q, shape, got_bytes);
        std::size_t mismatches = 0, nans = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
          nans += is_nan[i];
          if (!is_nan[i]) mismatches += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
        }
        REQUIRE(nans > 0);
        REQUIRE(mismatches == 0);
      }
}

TEST_CASE("uniform on CUDA: fp16 decode of arbitrary bytes (any finite fp16 scale and min) gives the reference's values",
          "[cuda]") {
  // The fp16-output fast decoders take a group through one fused fp16 multiply-add where
  // uniform_format::half_decode_exact holds, and through fp32 where it does not (uniform_half_decode.h). Packed
  // bytes of random codes with random finite metadata bits (scales of every non-negative exponent, subnormals and
  // zero included; mins of both signs) reach both branches: the test counts on the host the units that take each
  // (a group on the token axis, a channel pair's two groups on the channel axis). The first groups hold hand-made
  // metadata: scales +-0 and the smallest subnormal against mins +-0, +-subnormal and +-65504, a group whose code 1
  // decodes to an exact zero (s = 1, m = -1), and one that overflows (s = m = 65504). Shapes: the channel axis (decode_channel_half: 128 channels, where store offsets are constants, 64
  // channels, and 3 row groups per head) and the token axis (decode_token_half); bits 1, 2, 4 and 8.
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
  const std::vector<std::pair<const char*, BlockShape>> cases{{"channel", {2, 256, 128}}, {"channel", {1, 128, 64}}, {"channel", {1, 96, 64}}, {"token", {2, 40, 96}}};
  std::uint64_t state = 0x2545F4914F6CDD1Dull;
  const auto next = [&state] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  for (const int bits : {1, 2, 4, 8})
    for (const auto& [axis, shape] : cases) {
      const bool channel_axis = std::string(axis) == "channel";
      INFO("bits " << bits << ", axis " << axis << " " << shape.str());
      auto q = make_reference("uniform", {{"bits", std::to_string(bits)}, {"axis", axis}, {"scale_dtype", "fp16"}});
      const auto g = group_format::make_group_grid(channel_axis ? group_format::GroupAxis::channel : group_format::GroupAxis::token,
                                                   shape.heads, shape.tokens, shape.channels, 32);
      std::vector<std::uint8_t> bytes(q->layout(shape, {}).bytes());
      const auto sec = uniform_format::sections(group_format::CodeLayout::dense, g, static_cast<unsigned>(bits), DType::f16, bytes.data());
      for (std::uint8_t* b = bytes.data(); b < sec.scales; ++b) *b = static_cast<std::uint8_t>(next());
      const std::vector<std::pair<std::uint16_t, std::uint16_t>> edges{
          {0x0000, 0x0000}, {0x8000, 0x8000}, {0x0000, 0x8001}, {0x8000, 0x0001}, {0x0001, 0x7BFF}, {0x0001, 0xFBFF},
          {0x0001, 0x8000}, {0x3C00, 0xBC00}, {0x7BFF, 0x7BFF}, {0x7BFF, 0xFBFF}};
      const unsigned top = uniform_format::max_code(static_cast<unsigned>(bits));
      std::vector<bool> exact(static_cast<std::size_t>(g.group_count()));
      for (std::int64_t i = 0; i < g.group_count(); ++i) {
        auto s = static_cast<std::uint16_t>(next() % 0x7C00u);  // finite, non-negative
        auto m = static_cast<std::uint16_t>(next() % 0x7C00u | (next() & 1u) << 15);
        if (static_cast<std::size_t>(i) < edges.size()) std::tie(s, m) = edges[static_cast<std::size_t>(i)];
        std::memcpy(sec.scales + 2 * i, &s, 2);
        std::memcpy(sec.mins + 2 * i, &m, 2);
        exact[static_cast<std::size_t>(i)] = uniform_format::half_decode_exact(s, m, top);
      }
      std::size_t fused = 0, through_fp32 = 0;  // units: a group (token axis), a pair's two groups (channel axis)
      for (std::int64_t i = 0; i < g.group_count(); ++i) {
        if (!channel_axis) {
          (exact[static_cast<std::size_t>(i)] ? fused : through_fp32) += 1;
        } else if ((i / g.groups_per_row()) % 2 == 0) {  // channel 2p's group i and channel 2p + 1's group i + gpr
          (exact[static_cast<std::size_t>(i)] && exact[static_cast<std::size_t>(i + g.groups_per_row())] ? fused : through_fp32) += 1;
        }
      }
      INFO(fused << " units through the fused fp16 path, " << through_fp32 << " through fp32");
      REQUIRE(fused > 0);
      REQUIRE(through_fp32 > 0);
      const auto want = decode(*q, shape, bytes);
      DeviceBuffer in(bytes.size()), back(want.size() * 2);
      copy_to_device(in.data(), bytes.data(), bytes.size());
      fill_device(back.data(), 0xAB, back.bytes());
      q->decode_view(in.as<std::uint8_t>(), {}, TensorView{back.data(), DType::f16, Device::cuda, {shape.heads, shape.tokens, shape.channels}},
                     Execution::cuda());
      std::vector<std::uint16_t> halves(want.size());
      copy_to_host(halves.data(), back.data(), halves.size() * 2);
      std::size_t mismatches = 0, first = halves.size();
      for (std::size_t i = 0; i < halves.size(); ++i)
        if (halves[i] != float_to_half_bits(want[i])) {
          ++mismatches;
          if (first == halves.size()) first = i;
        }
      INFO("mismatches " << mismatches << ", first at element " << first);
      REQUIRE(mismatches == 0);
    }
}
