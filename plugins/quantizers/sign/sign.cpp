// sign: CPU scalar reference of VidKV's 1-bit quantizer (sign bit + mean-|x| scale per group, algorithms.md 2.2),
// optionally on the per-token channel FFT (algorithms.md 3.3, sign_fft.h). Release differences and the effective
// bits formula: sign.h; packed layout: sign_format.h (codes | scales [| zero mins in layout release]).
// SignQuantizer::encode / decode run the (transform, group) pair sign_kernels::choose picks (sign_kernels.h).
#include "vidkv/plugins/quantizers/sign/sign.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vidkv/core/env_switch.h"
#include "vidkv/core/error.h"
#include "vidkv/core/thread_scratch.h"
#include "vidkv/plugins/quantizers/sign/sign_cuda.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tile.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tolerance.h"
#include "vidkv/plugins/quantizers/sign/sign_kernels.h"

namespace vidkv {

SignQuantizer::SignQuantizer(const Params& params, CpuImplementation implementation)
    : GroupedQuantizer("sign", params, implementation) {}

namespace {
std::string fragment_channels_message(std::int64_t components) {
  return "layout fragment needs a multiple of 64 quantized values per token (channels, or FFT components), got " +
         std::to_string(components) + " (use layout: dense)";
}
}  // namespace

const SignQuantizer::CpuKernels& SignQuantizer::cpu_kernels(const group_format::GroupGrid& g) const {
  return sign_kernels::choose_group(implementation_, params_, g);
}

group_format::GroupGrid SignQuantizer::grid(const BlockShape& shape) const {
  return sign_kernels::values_grid(params_, shape);
}

PackedLayout SignQuantizer::layout(const BlockShape& shape, const TokenContext&) const {
  const auto g = grid(shape);
  VIDKV_REQUIRE(params_.layout != group_format::CodeLayout::fragment || group_format::fragment_ok(g, sign_format::kBits),
                ShapeError, "sign: ", fragment_channels_message(group_format::grid_channels(g)));
  PackedLayout l(shape.elements(), sign_format::kBits);
  l.add("codes", SectionKind::codes, sign_format::codes_bytes(params_.layout, g));
  l.add("scales", SectionKind::scales, sign_format::scales_bytes(g, params_.scale_dtype));
  if (params_.layout == group_format::CodeLayout::release)
    l.add("mins", SectionKind::zero_points, sign_format::zero_points_bytes(params_.layout, g, params_.scale_dtype));
  return l;
}

namespace sign_kernels {

void encode_reference(const SignParams& p, const group_format::GroupGrid& g, const float* values, std::uint8_t* out) {
  const DType sd = p.scale_dtype;
  const auto sec = sign_format::sections(p.layout, g, sd, out);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        double sum_abs = 0.0;
        for (std::int64_t j = j0; j < j0 + n; ++j) sum_abs += std::fabs(static_cast<double>(values[g.block_offset(h, r, j)]));
        const std::int64_t mi = group_format::meta_index(p.layout, g, h, r, gi);  // group-major in layout fragment
        group_format::put_scalar(scales, mi, sd, static_cast<float>(sum_abs / static_cast<double>(n)));
        if (p.layout == group_format::CodeLayout::release) group_format::put_scalar(mins, mi, sd, 0.0f);
        for (std::int64_t j = j0; j < j0 + n; ++j)
          group_format::put_code(p.layout, codes, g, sign_format::kBits, h, r, j,
                                 sign_format::encode_value(values[g.block_offset(h, r, j)]));
      }
    }
  }
}

void decode_reference(const SignParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* values) {
  const DType sd = p.scale_dtype;
  const auto sec = sign_format::sections(p.layout, g, sd, in);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const float s = group_format::get_scalar(scales, group_format::meta_index(p.layout, g, h, r, gi), sd);
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        for (std::int64_t j = j0; j < j0 + n; ++j) {
          const unsigned bit = group_format::get_code(p.layout, codes, g, sign_format::kBits, h, r, j);
          values[g.block_offset(h, r, j)] = sign_format::decode_value(bit, s, p.reconstruction);
        }
      }
    }
  }
}

}  // namespace sign_kernels

void SignQuantizer::encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const {
  std::memset(out, 0, layout(shape, ctx).bytes());
  const auto g = grid(shape);
  // The values to quantize, [heads, tokens, width]: the block itself or its per-token FFT components.
  // (Per-thread scratch: a fresh multi-megabyte vector per call would page-fault on every call.)
  const ThreadScratch transformed(params_.fft != SignFft::off ? static_cast<std::size_t>(g.heads * g.head_stride) : 0);
  const float* values = in;
  if (params_.fft != SignFft::off) {
    sign_kernels::choose_transform(implementation_, params_.fft, shape.channels)
        .forward(params_.fft, in, shape.heads * shape.tokens, shape.channels, transformed.data());
    values = transformed.data();
  }
  cpu_kernels(g).encode(params_, g, values, out);
}

void SignQuantizer::decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, float* out) const {
  const auto g = grid(shape);
  const ThreadScratch transformed(params_.fft != SignFft::off ? static_cast<std::size_t>(g.heads * g.head_stride) : 0);
  float* values = params_.fft != SignFft::off ? transformed.data() : out;
  cpu_kernels(g).decode(params_, g, in, values);
  if (params_.fft != SignFft::off)
    sign_kernels::choose_transform(implementation_, params_.fft, shape.channels)
        .inverse(params_.fft, values, shape.heads * shape.tokens, shape.channels, out);
}

namespace sign_cuda {

// The choice of path (sign_cuda.h), host code shared by every build so that it is tested on the CPU.
std::int64_t fused_tile_tokens(const Config& c, std::int64_t channels, std::int64_t staged_row_bytes) {
  if (c.fft == SignFft::off || !sign_fft_tile::applies(channels)) return 0;
  constexpr std::int64_t kSharedBytes = 48 * 1024;  // the default limit of dynamic shared memory per CTA
  constexpr std::int64_t kMaxTokens = 128;          // one thread per token in the transform phase
  const std::int64_t row_bytes =
      (fft_components(c.fft, channels) + 1) * static_cast<std::int64_t>(sizeof(float)) + staged_row_bytes;
  std::int64_t tokens = std::min(kMaxTokens, kSharedBytes / row_bytes);
  if (c.axis == group_format::GroupAxis::channel) return tokens >= c.group ? (tokens / c.group) * c.group : 0;
  return tokens >= 32 ? (tokens / 32) * 32 : (tokens / 4) * 4;  // a multiple of 4: the staging area stays 16-byte aligned
}

bool fused_fft_applies(const Config& c, const BlockShape& shape) {
  if (fused_tile_tokens(c, shape.channels) == 0) return false;
  const auto g = group_format::grid_of(c, shape, fft_components(c.fft, shape.channels));
  return group_format::word_aligned_groups(c.layout, g, sign_format::kBits);
}

bool cufft_forced() {
  return env_equals("VIDKV_CUDA_SIGN_FFT", "cufft");
}

Config dense_config(const Config& c) {
  Config d = c;
  d.layout = group_format::CodeLayout::dense;
  return d;
}

Path path(const Config& c, const BlockShape& shape) {
  if (c.fft == SignFft::off) return Path::exact;
  return !cufft_forced() && fused_fft_applies(c.layout == group_format::CodeLayout::fragment ? dense_config(c) : c, shape) ? Path::fft_tile : Path::cufft;
}

const char* tier_name(Path p) {
  switch (p) {
    case Path::exact: return "sign:cuda";
    case Path::fft_tile: return "sign:cuda+fft-tile";
    case Path::cufft: return "sign:cuda+cufft";
  }
  return "sign:cuda";
}

}  // namespace sign_cuda

sign_cuda::Config sign_cuda::config_of(const SignParams& p) {
  return sign_cuda::Config{p.group, p.axis, p.reconstruction, p.fft, p.scale_dtype, p.layout};
}

bool SignQuantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (!Quantizer::supports(device, shape, why)) return false;
  if (params_.layout == group_format::CodeLayout::fragment && !group_format::fragment_ok(grid(shape), sign_format::kBits)) {
    if (why) *why = "sign " + fragment_channels_message(group_format::grid_channels(grid(shape)));
    return false;
  }
  if (device != Device::cuda || params_.fft == SignFft::off) return true;
  std::int64_t n = shape.channels, largest = 1;
  for (std::int64_t p = 2; p * p <= n; ++p)
    while (n % p == 0) {
      largest = p;
      n /= p;
    }
  if (n > 1) largest = std::max(largest, n);
  if (largest <= sign_fft_tolerance::kMaxRadix) return true;
  if (why)
    *why = "sign fft over " + std::to_string(shape.channels) + " channels has the prime factor " + std::to_string(largest) +
           " > " + std::to_string(sign_fft_tolerance::kMaxRadix) +
           ": cuFFT's Bluestein path, which exceeds the named per-token tolerance (sign.h); use backend cpu";
  return false;
}

KernelTier SignQuantizer::tier(Device device, const BlockShape& shape) const {
  if (device == Device::cuda) {
    const auto p = sign_cuda::path(sign_cuda::config_of(params_), shape);
    return {sign_cuda::tier_name(p), p == sign_cuda::Path::exact};
  }
  return sign_kernels::choose(implementation_, params_, shape).tier();
}

#ifdef VIDKV_WITH_CUDA
void SignQuantizer::encode_cuda(const TensorView& in, const BlockShape& shape, const TokenContext&, std::uint8_t* out,
                       const Execution& ex) const {
  sign_cuda::encode(sign_cuda::config_of(params_), in.data, in.dtype, shape, out, ex.cuda_stream);
}

void SignQuantizer::decode_cuda(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, const TensorView& out,
                       const Execution& ex) const {
  sign_cuda::decode(sign_cuda::config_of(params_), in, shape, out.data, out.dtype, ex.cuda_stream);
}

namespace {
// The [heads, tokens, k] block of channels taken from a [heads, tokens, C] device view.
BlockShape channel_subset(const TensorView& v, const std::int32_t* index, std::int64_t k, const std::string& what) {
  const BlockShape full = block_shape_of(v, what);
  VIDKV_REQUIRE(v.device == Device::cuda, ShapeError, what, ": the view is on ", device_name(v.device), ", not cuda");
  VIDKV_REQUIRE(k >= 1 && k <= full.channels, ShapeError, what, ": ", k, " channels of a block of ", full.channels);
  VIDKV_REQUIRE(index != nullptr, ShapeError, what, ": no channel index");
  return BlockShape{full.heads, full.tokens, k};
}
}  // namespace

void SignQuantizer::encode_cuda_channels(const TensorView& in, const std::int32_t* index, std::int64_t k, const TokenContext&,
                                std::uint8_t* out, void* stream) const {
  const BlockShape shape = channel_subset(in, index, k, "sign encode (channels)");
  sign_cuda::encode(sign_cuda::config_of(params_), in.data, in.dtype, shape, out, stream,
                    sign_cuda::Channels{index, block_shape_of(in, "sign encode (channels)").channels});
}

void SignQuantizer::decode_cuda_channels(const std::uint8_t* in, const std::int32_t* index, std::int64_t k, const TokenContext&,
                                const TensorView& out, void* stream) const {
  const BlockShape shape = channel_subset(out, index, k, "sign decode (channels)");
  sign_cuda::decode(sign_cuda::config_of(params_), in, shape, out.data, out.dtype, stream,
                    sign_cuda::Channels{index, block_shape_of(out, "sign decode (channels)").channels});
}
#endif

void register_sign(PluginRegistry& registry) {
  registry.add<SignQuantizer>("sign", "VidKV 1-bit: sign bit and mean-|x| scale per group, optionally on the channel FFT");
}

}  // namespace vidkv
