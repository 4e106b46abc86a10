// uniform: the optimised CPU path (CpuImplementation::optimized) of asymmetric min/max group quantization.
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

#include "vidkv/plugins/quantizers/code_stream.h"
#include "vidkv/plugins/quantizers/cpu_dispatch.h"
#include "vidkv/plugins/quantizers/group_kernels.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"

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

}  // namespace

void Uniform::encode_optimized(const float* in, const BlockShape& shape, std::uint8_t* out) const {
  const auto g = grid(shape);
  const auto bits = static_cast<unsigned>(params_.bits);
  const DType sd = params_.scale_dtype;
  const float top = static_cast<float>(uniform_format::max_code(bits));
  std::uint8_t* codes = out;
  std::uint8_t* scales = codes + uniform_format::codes_bytes(params_.layout, g, bits);
  std::uint8_t* mins = scales + uniform_format::scales_bytes(g, sd);
  const std::int64_t groups_per_row = g.groups_per_row();  // hoisted: GroupGrid computes it with a division
  if (params_.axis == GroupAxis::channel) {
    const std::int64_t width = shape.channels;  // rows of the grid = channels, contiguous in a token row
    const auto w = static_cast<std::size_t>(width);
    std::vector<float> mn(w), mx(w), scale(w), stored_mn(w);
    std::vector<std::uint64_t> col_bit(w);
    const auto tile_bytes = static_cast<std::size_t>(std::min<std::int64_t>(g.group, g.length) * width);
    std::vector<std::uint8_t> tile(tile_bytes), scratch(tile_bytes);
    for (std::int64_t h = 0; h < g.heads; ++h) {
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        const float* base = in + h * g.head_stride + j0 * width;
        group_kernels::column_min_max(base, n, width, width, mn.data(), mx.data());
        for (std::size_t c = 0; c < w; ++c) {
          const std::int64_t index = (h * width + static_cast<std::int64_t>(c)) * groups_per_row + gi;  // group_index
          scale[c] = group_kernels::store_rounded(scales, index, sd, (mx[c] - mn[c]) / top);
          stored_mn[c] = group_kernels::store_rounded(mins, index, sd, mn[c]);
          col_bit[c] = code_stream::code_bit(params_.layout, g, bits, h, static_cast<std::int64_t>(c), j0);
        }
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
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      const float* x = in + g.block_offset(h, r, 0);
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        float mn = 0, mx = 0;
        group_kernels::min_max(x + j0, n, &mn, &mx);
        const std::int64_t index = (h * g.rows + r) * groups_per_row + gi;  // group_index
        const float scale = group_kernels::store_rounded(scales, index, sd, (mx - mn) / top);
        const float stored_mn = group_kernels::store_rounded(mins, index, sd, mn);
        std::fill(row_scale.begin() + j0, row_scale.begin() + j0 + n, scale);
        std::fill(row_mn.begin() + j0, row_mn.begin() + j0 + n, stored_mn);
      }
      codes_of(x, row_scale.data(), row_mn.data(), top, g.length, row.data());
      code_stream::write_codes(codes, code_stream::code_bit(params_.layout, g, bits, h, r, 0), row.data(), g.length, bits);
    }
  }
}

void Uniform::decode_optimized(const std::uint8_t* in, const BlockShape& shape, float* out) const {
  const auto g = grid(shape);
  const auto bits = static_cast<unsigned>(params_.bits);
  const DType sd = params_.scale_dtype;
  const std::uint8_t* codes = in;
  const std::uint8_t* scales = codes + uniform_format::codes_bytes(params_.layout, g, bits);
  const std::uint8_t* mins = scales + uniform_format::scales_bytes(g, sd);
  const std::int64_t groups_per_row = g.groups_per_row();
  if (params_.axis == GroupAxis::channel) {
    const std::int64_t width = shape.channels;
    const auto w = static_cast<std::size_t>(width);
    std::vector<float> scale(w), mn(w);
    std::vector<std::uint64_t> col_bit(w);
    const auto tile_bytes = static_cast<std::size_t>(std::min<std::int64_t>(g.group, g.length) * width);
    std::vector<std::uint8_t> tile(tile_bytes), scratch(tile_bytes);
    for (std::int64_t h = 0; h < g.heads; ++h) {
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        for (std::size_t c = 0; c < w; ++c) {
          const std::int64_t index = (h * width + static_cast<std::int64_t>(c)) * groups_per_row + gi;
          scale[c] = group_format::get_scalar(scales, index, sd);
          mn[c] = group_format::get_scalar(mins, index, sd);
          col_bit[c] = code_stream::code_bit(params_.layout, g, bits, h, static_cast<std::int64_t>(c), j0);
        }
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
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      code_stream::read_codes(codes, code_stream::code_bit(params_.layout, g, bits, h, r, 0), row.data(), g.length, bits);
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        const std::int64_t index = (h * g.rows + r) * groups_per_row + gi;
        std::fill(row_scale.begin() + j0, row_scale.begin() + j0 + n, group_format::get_scalar(scales, index, sd));
        std::fill(row_mn.begin() + j0, row_mn.begin() + j0 + n, group_format::get_scalar(mins, index, sd));
      }
      values_of(row.data(), row_scale.data(), row_mn.data(), g.length, out + g.block_offset(h, r, 0));
    }
  }
}

}  // namespace vidkv
