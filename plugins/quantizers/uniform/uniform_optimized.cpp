// uniform: the portable optimised CPU tier (uniform_kernels.h "optimized") of asymmetric min/max group quantization.
// Same bytes as the reference in uniform.cpp, produced a tile at a time:
//   axis channel: for each head and group of G tokens, the [G, channels] tile is read row by row (contiguous),
//                 min/max/codes are computed for all channels at once (vectorised across channels, each channel's
//                 elements visited in the reference's token order), then each channel's G codes are written to
//                 the stream in one run (code_stream.h);
//   axis token:   each token row is contiguous; min/max of a group use lane-wise extrema (group_kernels.h), codes
//                 of the row are packed in one run.
// Every per-element operation (subtract, divide, clamp, round half to even, q * scale + mn) is the reference's,
// in fp32, so codes, scales and mins are bit-identical; only the order in which groups are visited differs.
#include <algorithm>
#include <vector>

#include "vidkv/plugins/quantizers/uniform/uniform.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_kernels.h"
#include "vidkv/quantization/code_stream.h"
#include "vidkv/quantization/cpu_dispatch.h"
#include "vidkv/quantization/group_kernels.h"
#include "vidkv/quantization/half_convert.h"

namespace vidkv {

namespace {

using group_format::GroupAxis;

// Codes are computed a chunk at a time in three simple loops (divide and clamp in float, round in int32, narrow to
// bytes): GCC 12 vectorises each of them but not one loop that does all three.
constexpr std::int64_t kChunk = 64;

// q[i] = encode_value(x[i], scale[i], mn[i]) (uniform_format.h) for n elements; a zero scale gives code 0.
VIDKV_CPU_CLONES
void codes_of(const float* __restrict x, const float* __restrict scale, const float* __restrict mn, float top,
              std::int64_t n, std::uint8_t* __restrict q) {
  float v[kChunk];
  std::int32_t code[kChunk];
  for (std::int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const std::int64_t m = std::min(kChunk, n - i0);
    const float* xs = x + i0;
    const float* ss = scale + i0;
    const float* ms = mn + i0;
    for (std::int64_t i = 0; i < m; ++i) {
      const float s = ss[i];
      const float divisor = s > 0.0f ? s : 1.0f;  // no 0/0 in the lanes whose code is forced to 0 below
      v[i] = group_kernels::clamp_code((xs[i] - ms[i]) / divisor, top);
    }
    for (std::int64_t i = 0; i < m; ++i) {
      const int live = ss[i] > 0.0f;
      code[i] = group_kernels::round_half_even_small(v[i]) * live;
    }
    for (std::int64_t i = 0; i < m; ++i) q[i0 + i] = static_cast<std::uint8_t>(code[i]);
  }
}

// out[i] = decode_value(q[i], scale[i], mn[i]) = q * scale + mn in fp32.
VIDKV_CPU_CLONES
void values_of(const std::uint8_t* __restrict q, const float* __restrict scale, const float* __restrict mn, std::int64_t n,
               float* __restrict out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(q[i]) * scale[i] + mn[i];
}

// Stores n group scalars (scale or min) given before rounding: element k goes to index first + k * stride of the
// scalar array, rounded to `sd`; rounded[k] receives the stored value (what store_rounded gives, a batch at once).
void store_batch(std::uint8_t* bytes, std::int64_t first, std::int64_t stride, DType sd, const float* v, std::int64_t n,
                 std::uint16_t* bits, float* rounded) {
  if (sd == DType::f16) {
    half_convert::to_half(v, n, bits, rounded);
    for (std::int64_t k = 0; k < n; ++k) {
      std::uint8_t* p = bytes + 2 * (first + k * stride);
      p[0] = static_cast<std::uint8_t>(bits[k]);
      p[1] = static_cast<std::uint8_t>(bits[k] >> 8);
    }
    return;
  }
  for (std::int64_t k = 0; k < n; ++k) rounded[k] = group_kernels::store_rounded(bytes, first + k * stride, sd, v[k]);
}

// Reads n group scalars at index first + k * stride.
void load_batch(const std::uint8_t* bytes, std::int64_t first, std::int64_t stride, DType sd, std::int64_t n,
                std::uint16_t* bits, float* out) {
  if (sd == DType::f16) {
    for (std::int64_t k = 0; k < n; ++k) {
      const std::uint8_t* p = bytes + 2 * (first + k * stride);
      bits[k] = static_cast<std::uint16_t>(p[0] | (p[1] << 8));
    }
    half_convert::from_half(bits, n, out);
    return;
  }
  for (std::int64_t k = 0; k < n; ++k) out[k] = group_format::get_scalar(bytes, first + k * stride, sd);
}

// Groups whose range does not fit the scale dtype (a scale or min that rounds to inf): their scale and min again
// from uniform_format::stored_group, rewritten in place (the rest, every group on ordinary data, are untouched).
void saturate_unfit(std::uint8_t* scales, std::uint8_t* mins, std::int64_t first, std::int64_t stride, DType sd,
                    const float* mn, const float* mx, float top, std::int64_t n, float* scale, float* stored_mn) {
  for (std::int64_t k = 0; k < n; ++k) {
    if (__builtin_expect(uniform_format::decodes_finite(scale[k], stored_mn[k], top), 1)) continue;
    const auto stored = uniform_format::saturated_group(mn[k], mx[k], top, sd);
    scale[k] = stored.scale;
    stored_mn[k] = stored.mn;
    group_format::put_scalar(scales, first + k * stride, sd, stored.scale);
    group_format::put_scalar(mins, first + k * stride, sd, stored.mn);
  }
}

}  // namespace

void uniform_kernels::encode_optimized(const UniformParams& p, const group_format::GroupGrid& g, const float* in,
                                       std::uint8_t* out) {
  const auto bits = static_cast<unsigned>(p.bits);
  const DType sd = p.scale_dtype;
  const float top = static_cast<float>(uniform_format::max_code(bits));
  const auto sec = uniform_format::sections(p.layout, g, bits, sd, out);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  const std::int64_t groups_per_row = g.groups_per_row();  // hoisted: GroupGrid computes it with a division
  if (p.axis == GroupAxis::channel) {
    const std::int64_t width = g.rows;  // rows of the grid = channels, contiguous in a token row
    const auto w = static_cast<std::size_t>(width);
    std::vector<float> mn(w), mx(w), raw_scale(w), scale(w), stored_mn(w);
    std::vector<std::uint16_t> half_bits(w);
    std::vector<std::uint64_t> col_bit(w);
    const auto tile_bytes = static_cast<std::size_t>(std::min<std::int64_t>(g.group, g.length) * width);
    std::vector<std::uint8_t> tile(tile_bytes), scratch(tile_bytes);
    for (std::int64_t h = 0; h < g.heads; ++h) {
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        const float* base = in + h * g.head_stride + j0 * width;
        group_kernels::column_min_max(base, n, width, width, mn.data(), mx.data());
        for (std::size_t c = 0; c < w; ++c) {
          raw_scale[c] = (mx[c] - mn[c]) / top;
          col_bit[c] = code_stream::code_bit(p.layout, g, bits, h, static_cast<std::int64_t>(c), j0);
        }
        // Channel c's group gi has group_index (h * width + c) * groups_per_row + gi.
        store_batch(scales, h * width * groups_per_row + gi, groups_per_row, sd, raw_scale.data(), width, half_bits.data(),
                    scale.data());
        store_batch(mins, h * width * groups_per_row + gi, groups_per_row, sd, mn.data(), width, half_bits.data(),
                    stored_mn.data());
        saturate_unfit(scales, mins, h * width * groups_per_row + gi, groups_per_row, sd, mn.data(), mx.data(), top, width,
                       scale.data(), stored_mn.data());
        for (std::int64_t t = 0; t < n; ++t)
          codes_of(base + t * width, scale.data(), stored_mn.data(), top, width, tile.data() + t * width);
        code_stream::write_columns(codes, tile.data(), n, width, bits, col_bit.data(), scratch.data());
      }
    }
    return;
  }
  // Axis token: a row is one token's channels; every group's scale and min are expanded over its elements so
  // that the codes of the whole row come from one vectorised call.
  const auto len = static_cast<std::size_t>(g.length);
  std::vector<std::uint8_t> row(len);
  std::vector<float> row_scale(len), row_mn(len);
  const auto gpr = static_cast<std::size_t>(groups_per_row);
  std::vector<float> group_mn(gpr), group_mx(gpr), group_raw_scale(gpr), group_scale(gpr), group_stored_mn(gpr);
  std::vector<std::uint16_t> half_bits(gpr);
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      const float* x = in + g.block_offset(h, r, 0);
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const auto k = static_cast<std::size_t>(gi);
        group_kernels::min_max(x + gi * g.group, g.group_size(gi), &group_mn[k], &group_mx[k]);
        group_raw_scale[k] = (group_mx[k] - group_mn[k]) / top;
      }
      const std::int64_t first = (h * g.rows + r) * groups_per_row;  // group_index of the row's first group
      store_batch(scales, first, 1, sd, group_raw_scale.data(), groups_per_row, half_bits.data(), group_scale.data());
      store_batch(mins, first, 1, sd, group_mn.data(), groups_per_row, half_bits.data(), group_stored_mn.data());
      saturate_unfit(scales, mins, first, 1, sd, group_mn.data(), group_mx.data(), top, groups_per_row, group_scale.data(),
                     group_stored_mn.data());
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        group_kernels::fill(row_scale.data() + j0, n, group_scale[static_cast<std::size_t>(gi)]);
        group_kernels::fill(row_mn.data() + j0, n, group_stored_mn[static_cast<std::size_t>(gi)]);
      }
      codes_of(x, row_scale.data(), row_mn.data(), top, g.length, row.data());
      code_stream::write_codes(codes, code_stream::code_bit(p.layout, g, bits, h, r, 0), row.data(), g.length, bits);
    }
  }
}

void uniform_kernels::decode_optimized(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in,
                                       float* out) {
  const auto bits = static_cast<unsigned>(p.bits);
  const DType sd = p.scale_dtype;
  const auto sec = uniform_format::sections(p.layout, g, bits, sd, in);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  const std::int64_t groups_per_row = g.groups_per_row();
  if (p.axis == GroupAxis::channel) {
    const std::int64_t width = g.rows;  // the channels
    const auto w = static_cast<std::size_t>(width);
    std::vector<float> scale(w), mn(w);
    std::vector<std::uint16_t> half_bits(w);
    std::vector<std::uint64_t> col_bit(w);
    const auto tile_bytes = static_cast<std::size_t>(std::min<std::int64_t>(g.group, g.length) * width);
    std::vector<std::uint8_t> tile(tile_bytes), scratch(tile_bytes);
    for (std::int64_t h = 0; h < g.heads; ++h) {
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        load_batch(scales, h * width * groups_per_row + gi, groups_per_row, sd, width, half_bits.data(), scale.data());
        load_batch(mins, h * width * groups_per_row + gi, groups_per_row, sd, width, half_bits.data(), mn.data());
        for (std::size_t c = 0; c < w; ++c)
          col_bit[c] = code_stream::code_bit(p.layout, g, bits, h, static_cast<std::int64_t>(c), j0);
        code_stream::read_columns(codes, tile.data(), n, width, bits, col_bit.data(), scratch.data());
        float* base = out + h * g.head_stride + j0 * width;
        for (std::int64_t t = 0; t < n; ++t)
          values_of(tile.data() + t * width, scale.data(), mn.data(), width, base + t * width);
      }
    }
    return;
  }
  const auto len = static_cast<std::size_t>(g.length);
  std::vector<std::uint8_t> row(len);
  std::vector<float> row_scale(len), row_mn(len);
  const auto gpr = static_cast<std::size_t>(groups_per_row);
  std::vector<float> group_scale(gpr), group_mn(gpr);
  std::vector<std::uint16_t> half_bits(gpr);
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      code_stream::read_codes(codes, code_stream::code_bit(p.layout, g, bits, h, r, 0), row.data(), g.length, bits);
      const std::int64_t first = (h * g.rows + r) * groups_per_row;
      load_batch(scales, first, 1, sd, groups_per_row, half_bits.data(), group_scale.data());
      load_batch(mins, first, 1, sd, groups_per_row, half_bits.data(), group_mn.data());
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        group_kernels::fill(row_scale.data() + j0, n, group_scale[static_cast<std::size_t>(gi)]);
        group_kernels::fill(row_mn.data() + j0, n, group_mn[static_cast<std::size_t>(gi)]);
      }
      values_of(row.data(), row_scale.data(), row_mn.data(), g.length, out + g.block_offset(h, r, 0));
    }
  }
}

}  // namespace vidkv
