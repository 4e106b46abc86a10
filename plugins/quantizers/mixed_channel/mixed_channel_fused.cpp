// mixed_channel_fused.h: when the fused kernels apply (host code, in every build: MixedChannelQuantizer::tier names
// the kernels without a GPU).
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_fused.h"

#include "vidkv/core/env_switch.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"

namespace vidkv::mixed_channel_fused {

namespace {

bool aligned(const void* p, std::uintptr_t bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }

bool unfused_forced() {
  return env_equals("VIDKV_CUDA_MIXED_CHANNEL", "unfused");
}

}  // namespace

const char* refusal(const Children& c, const BlockShape& shape, std::int64_t k) {
  const std::int64_t d = shape.channels, n = d - k;
  if (unfused_forced()) return "VIDKV_CUDA_MIXED_CHANNEL=unfused";
  if (k <= 0 || n <= 0) return "every channel on one side";
  if (d % 8 != 0) return "channel count not a multiple of 8";
  if (c.high.layout == group_format::CodeLayout::fragment || c.low.layout == group_format::CodeLayout::fragment)
    return "a child in layout fragment (coded dense, then permuted: the children's own paths)";
  const uniform_cuda::Config& u = c.high;
  if (u.axis != group_format::GroupAxis::channel || u.group != 32) return "uniform not grouped by 32 tokens";
  if (!group_format::release_bits_ok(u.bits)) return "uniform bits not 1, 2, 4 or 8";
  if (k % 2 != 0) return "odd high channel count";
  const BlockShape hs{shape.heads, shape.tokens, k}, ls{shape.heads, shape.tokens, n};
  if (!group_format::word_aligned_groups(u.layout, group_format::grid_of(u, hs, k), u.bits)) return "uniform groups not word-aligned";
  const sign_cuda::Config& s = c.low;
  if (s.fft == SignFft::off || sign_cuda::path(s, ls) != sign_cuda::Path::fft_tile) return "sign not on its fused FFT tile path";
  if (s.axis != group_format::GroupAxis::channel || s.group <= 0 || kTileTokens % s.group != 0)
    return "sign not grouped along tokens by a divisor of 64";
  const std::int64_t w = fft_components(s.fft, n);
  if (encode_shared_bytes(d, w) > kMaxSharedBytes || decode_shared_bytes(d, k, w) > kMaxSharedBytes)
    return "tiles beyond the shared memory of a CTA";
  return nullptr;
}

const char* encode_refusal(const Children& c, const BlockShape& shape, std::int64_t k, DType in_dtype, const void* in,
                           const std::uint8_t* high_bytes, const std::uint8_t* low_bytes) {
  if (const char* why = refusal(c, shape, k)) return why;
  if (in_dtype == DType::f32) return "fp32 input";
  if (!aligned(in, 16) || !aligned(high_bytes, 4) || !aligned(low_bytes, 4)) return "buffers not aligned";
  return nullptr;
}

const char* decode_refusal(const Children& c, const BlockShape& shape, std::int64_t k, DType /*out_dtype*/, const void* out,
                           const std::uint8_t* high_bytes, const std::uint8_t* low_bytes) {
  if (const char* why = refusal(c, shape, k)) return why;
  if (!aligned(out, 16) || !aligned(high_bytes, 4) || !aligned(low_bytes, 4)) return "buffers not aligned";
  return nullptr;
}

}  // namespace vidkv::mixed_channel_fused
