// sign: CPU scalar reference of VidKV's 1-bit quantizer (sign bit + mean-|x| scale per group, algorithms.md 2.2),
// optionally on the per-token channel FFT (algorithms.md 3.3, sign_fft.h). Release differences and the effective
// bits formula: sign.h; packed layout: sign_format.h (codes | scales [| zero mins in layout release]).
#include "vidkv/plugins/quantizers/sign/sign.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vidkv/plugins/quantizers/sign/sign_fft_tolerance.h"

#include "vidkv/core/cpu_fft_tier.h"
#include "vidkv/core/error.h"
#include "vidkv/core/thread_scratch.h"
#include "vidkv/plugins/quantizers/sign/sign_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_cuda.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_fftw_batched.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tile.h"

namespace vidkv {

namespace {

// The channel FFT's transform (core/cpu_fft_tier.h): the reference always FFTW's per-row plans (the oracle); the
// optimised implementation the tier in force -- by default the AVX-512 transforms where they apply (power-of-two
// widths; not FFTW's bits, within the bound of sign_fft_avx512.cpp), else FFTW's batched plans
// (sign_fft_fftw_batched.h) or FFTW's per-row plans. Chosen on every call.
enum class FftPath { fftw_rows, fftw_batched, avx512 };

FftPath fft_path(CpuImplementation impl, SignFft kind, std::int64_t n) {
  if (impl == CpuImplementation::reference) return FftPath::fftw_rows;
  switch (cpu_fft_tier()) {
    case CpuFftTier::fftw_batched: return FftPath::fftw_batched;
    case CpuFftTier::fftw: return FftPath::fftw_rows;
    case CpuFftTier::avx512: break;
  }
  return fft_avx512_applies(kind, n) ? FftPath::avx512 : FftPath::fftw_rows;
}

void forward_fft(CpuImplementation impl, SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  switch (fft_path(impl, kind, n)) {
    case FftPath::fftw_batched: return fft_forward_rows_fftw_batched(kind, in, rows, n, out);
    case FftPath::avx512: return fft_forward_rows_avx512(kind, in, rows, n, out);
    case FftPath::fftw_rows: break;
  }
  fft_forward_rows(kind, in, rows, n, out);
}

void inverse_fft(CpuImplementation impl, SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  switch (fft_path(impl, kind, n)) {
    case FftPath::fftw_batched: return fft_inverse_rows_fftw_batched(kind, in, rows, n, out);
    case FftPath::avx512: return fft_inverse_rows_avx512(kind, in, rows, n, out);
    case FftPath::fftw_rows: break;
  }
  fft_inverse_rows(kind, in, rows, n, out);
}

}  // namespace

SignQuantizer::SignQuantizer(const Params& params, CpuImplementation implementation)
    : params_(params), implementation_(implementation) {
  VIDKV_REQUIRE(params.group >= 1, ConfigError, "sign: group = ", params.group, " must be >= 1");
  set_plugin_name("sign");
}

group_format::GroupGrid SignQuantizer::grid(const BlockShape& shape) const {
  const std::int64_t width = params_.fft == SignFft::off ? shape.channels : fft_components(params_.fft, shape.channels);
  return group_format::make_group_grid(params_.axis, shape.heads, shape.tokens, width, params_.group);
}

PackedLayout SignQuantizer::layout(const BlockShape& shape, const TokenContext&) const {
  const auto g = grid(shape);
  PackedLayout l(shape.elements(), sign_format::kBits);
  l.add("codes", SectionKind::codes, sign_format::codes_bytes(params_.layout, g));
  l.add("scales", SectionKind::scales, sign_format::scales_bytes(g, params_.scale_dtype));
  if (params_.layout == group_format::CodeLayout::release)
    l.add("mins", SectionKind::zero_points, sign_format::zero_points_bytes(params_.layout, g, params_.scale_dtype));
  return l;
}

void SignQuantizer::encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const {
  const auto g = grid(shape);
  const DType sd = params_.scale_dtype;
  std::memset(out, 0, layout(shape, ctx).bytes());
  // The values to quantize, [heads, tokens, width]: the block itself or its per-token FFT components.
  // (Per-thread scratch: a fresh multi-megabyte vector per call would page-fault on every call.)
  const ThreadScratch transformed(params_.fft != SignFft::off ? static_cast<std::size_t>(g.heads * g.head_stride) : 0);
  const float* values = in;
  if (params_.fft != SignFft::off) {
    forward_fft(implementation_, params_.fft, in, shape.heads * shape.tokens, shape.channels, transformed.data());
    values = transformed.data();
  }
  if (implementation_ == CpuImplementation::optimized) return encode_values_optimized(values, g, out);
  std::uint8_t* codes = out;
  std::uint8_t* scales = codes + sign_format::codes_bytes(params_.layout, g);
  std::uint8_t* mins = scales + sign_format::scales_bytes(g, sd);
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        double sum_abs = 0.0;
        for (std::int64_t j = j0; j < j0 + n; ++j) sum_abs += std::fabs(static_cast<double>(values[g.block_offset(h, r, j)]));
        group_format::put_scalar(scales, g.group_index(h, r, gi), sd, static_cast<float>(sum_abs / static_cast<double>(n)));
        if (params_.layout == group_format::CodeLayout::release) group_format::put_scalar(mins, g.group_index(h, r, gi), sd, 0.0f);
        for (std::int64_t j = j0; j < j0 + n; ++j)
          group_format::put_code(params_.layout, codes, g, sign_format::kBits, h, r, j,
                                 sign_format::encode_value(values[g.block_offset(h, r, j)]));
      }
    }
  }
}

void SignQuantizer::decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, float* out) const {
  const auto g = grid(shape);
  const ThreadScratch transformed(params_.fft != SignFft::off ? static_cast<std::size_t>(g.heads * g.head_stride) : 0);
  float* values = out;
  if (params_.fft != SignFft::off) values = transformed.data();
  if (implementation_ == CpuImplementation::optimized) {
    decode_values_optimized(in, g, values);
  } else {
    decode_values_reference(in, g, values);
  }
  if (params_.fft != SignFft::off) inverse_fft(implementation_, params_.fft, values, shape.heads * shape.tokens, shape.channels, out);
}

void SignQuantizer::decode_values_reference(const std::uint8_t* in, const group_format::GroupGrid& g, float* values) const {
  const DType sd = params_.scale_dtype;
  const std::uint8_t* codes = in;
  const std::uint8_t* scales = codes + sign_format::codes_bytes(params_.layout, g);
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const float s = group_format::get_scalar(scales, g.group_index(h, r, gi), sd);
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        for (std::int64_t j = j0; j < j0 + n; ++j) {
          const unsigned bit = group_format::get_code(params_.layout, codes, g, sign_format::kBits, h, r, j);
          values[g.block_offset(h, r, j)] = sign_format::decode_value(bit, s, params_.reconstruction);
        }
      }
    }
  }
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
  const auto g = group_format::make_group_grid(c.axis, shape.heads, shape.tokens, fft_components(c.fft, shape.channels), c.group);
  return group_format::word_aligned_groups(c.layout, g, sign_format::kBits);
}

bool cufft_forced() {
  const char* v = std::getenv("VIDKV_CUDA_SIGN_FFT");
  return v != nullptr && std::string(v) == "cufft";
}

Path path(const Config& c, const BlockShape& shape) {
  if (c.fft == SignFft::off) return Path::exact;
  return !cufft_forced() && fused_fft_applies(c, shape) ? Path::fft_tile : Path::cufft;
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

namespace {
sign_cuda::Config cuda_config(const SignParams& p) {
  return sign_cuda::Config{p.group, p.axis, p.reconstruction, p.fft, p.scale_dtype, p.layout};
}
}  // namespace

bool SignQuantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (!Quantizer::supports(device, shape, why)) return false;
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
    const auto p = sign_cuda::path(cuda_config(params_), shape);
    return {sign_cuda::tier_name(p), p == sign_cuda::Path::exact};
  }
  if (implementation_ == CpuImplementation::reference) return {plugin_name() + ":reference", true};
  // The optimised path's quantization is exact; its FFT (core/cpu_fft_tier.h) is exact on FFTW's per-row plans,
  // inexact on the AVX-512 transforms and on FFTW's batched plans (other codelets than the reference's).
  const FftPath path = params_.fft == SignFft::off ? FftPath::fftw_rows : fft_path(implementation_, params_.fft, shape.channels);
  const bool batched = path == FftPath::fftw_batched;
  const bool avx_fft = path == FftPath::avx512;
  const bool avx = sign_avx512::applies(grid(shape), params_.axis, params_.scale_dtype);
  return {plugin_name() + (avx ? ":avx512" : ":optimized") + (avx_fft ? "+fft-avx512" : "") + (batched ? "+fft-fftw-batched" : ""),
          !avx_fft && !batched};
}

#ifdef VIDKV_WITH_CUDA
void SignQuantizer::encode_cuda(const TensorView& in, const BlockShape& shape, const TokenContext&, std::uint8_t* out,
                       void* stream) const {
  sign_cuda::encode(cuda_config(params_), in.data, in.dtype, shape, out, stream);
}

void SignQuantizer::decode_cuda(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, const TensorView& out,
                       void* stream) const {
  sign_cuda::decode(cuda_config(params_), in, shape, out.data, out.dtype, stream);
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
  sign_cuda::encode(cuda_config(params_), in.data, in.dtype, shape, out, stream,
                    sign_cuda::Channels{index, block_shape_of(in, "sign encode (channels)").channels});
}

void SignQuantizer::decode_cuda_channels(const std::uint8_t* in, const std::int32_t* index, std::int64_t k, const TokenContext&,
                                const TensorView& out, void* stream) const {
  const BlockShape shape = channel_subset(out, index, k, "sign decode (channels)");
  sign_cuda::decode(cuda_config(params_), in, shape, out.data, out.dtype, stream,
                    sign_cuda::Channels{index, block_shape_of(out, "sign decode (channels)").channels});
}
#endif

void register_sign(PluginRegistry& registry) {
  registry.add<SignQuantizer>("sign", "VidKV 1-bit: sign bit and mean-|x| scale per group, optionally on the channel FFT");
}

}  // namespace vidkv
