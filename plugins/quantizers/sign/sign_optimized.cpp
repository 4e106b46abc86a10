// sign: the portable optimised group tier (sign_kernels.h "optimized") of the 1-bit quantizer, on the values to
// quantize (the block, or its per-token FFT components from the transform sign_kernels::choose picked). Given the
// same values, the same bytes as the reference in sign.cpp:
//   axis channel: per head and group of G tokens, the [G, width] tile is read row by row; every component's sum
//                 of |x| is accumulated in double in token order (the reference's order, vectorised across
//                 components), bits are (x >= 0), and each component's G bits are written in one run;
//   axis token:   a group's sum of |x| is sequential in double (the reference's order), a row's bits in one run.
#include <algorithm>
#include <cmath>
#include <vector>

#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/sign/sign_kernels.h"
#include "vidkv/quantization/code_stream.h"
#include "vidkv/quantization/cpu_dispatch.h"
#include "vidkv/quantization/group_kernels.h"

namespace vidkv {

namespace {

using group_format::GroupAxis;

VIDKV_CPU_CLONES
void sign_bits(const float* __restrict x, std::int64_t n, std::uint8_t* __restrict q) {
  constexpr std::int64_t kChunk = 64;  // int32 lanes first, bytes second: one loop of both does not vectorise
  std::int32_t bit[kChunk];
  for (std::int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const std::int64_t m = std::min(kChunk, n - i0);
    for (std::int64_t i = 0; i < m; ++i) bit[i] = x[i0 + i] >= 0.0f;
    for (std::int64_t i = 0; i < m; ++i) q[i0 + i] = static_cast<std::uint8_t>(bit[i]);
  }
}

// values[i] = decode_value(q[i], s[i]) (sign_format.h): s for bit 1; for bit 0, -s (symmetric) or 0.
VIDKV_CPU_CLONES
void sign_values(const std::uint8_t* __restrict q, const float* __restrict s, bool symmetric, std::int64_t n,
                 float* __restrict out) {
  if (symmetric) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = q[i] ? s[i] : -s[i];
  } else {
    for (std::int64_t i = 0; i < n; ++i) out[i] = q[i] ? s[i] : 0.0f;
  }
}

}  // namespace

void sign_kernels::encode_optimized(const SignParams& p, const group_format::GroupGrid& g, const float* values,
                                    std::uint8_t* out) {
  const DType sd = p.scale_dtype;
  const group_format::CodeLayout layout = p.layout;
  const auto sec = sign_format::sections(layout, g, sd, out);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  const bool release = layout == group_format::CodeLayout::release;
  if (p.axis == GroupAxis::channel) {
    const std::int64_t width = g.rows;  // components, contiguous in a token row
    const std::int64_t groups_per_row = g.groups_per_row();  // hoisted: computed with a division
    std::vector<double> sums(static_cast<std::size_t>(width));
    std::vector<std::uint64_t> col_bit(static_cast<std::size_t>(width));
    const auto tile_bytes = static_cast<std::size_t>(std::min<std::int64_t>(g.group, g.length) * width);
    std::vector<std::uint8_t> tile(tile_bytes), scratch(tile_bytes);
    for (std::int64_t h = 0; h < g.heads; ++h) {
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        const float* base = values + h * g.head_stride + j0 * width;
        std::fill(sums.begin(), sums.end(), 0.0);
        group_kernels::column_abs_sum(base, n, width, width, sums.data());
        for (std::int64_t c = 0; c < width; ++c) {
          const double mean_abs = sums[static_cast<std::size_t>(c)] / static_cast<double>(n);
          const std::int64_t index = (h * width + c) * groups_per_row + gi;  // group_index
          group_format::put_scalar(scales, index, sd, static_cast<float>(mean_abs));
          if (release) group_format::put_scalar(mins, index, sd, 0.0f);
          col_bit[static_cast<std::size_t>(c)] = code_stream::code_bit(layout, g, sign_format::kBits, h, c, j0);
        }
        for (std::int64_t t = 0; t < n; ++t) sign_bits(base + t * width, width, tile.data() + t * width);
        code_stream::write_columns(codes, tile.data(), n, width, sign_format::kBits, col_bit.data(), scratch.data());
      }
    }
    return;
  }
  std::vector<std::uint8_t> row(static_cast<std::size_t>(g.length));
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      const float* x = values + g.block_offset(h, r, 0);
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        double sum_abs = 0.0;
        for (std::int64_t j = j0; j < j0 + n; ++j) sum_abs += std::fabs(static_cast<double>(x[j]));
        group_format::put_scalar(scales, g.group_index(h, r, gi), sd, static_cast<float>(sum_abs / static_cast<double>(n)));
        if (release) group_format::put_scalar(mins, g.group_index(h, r, gi), sd, 0.0f);
      }
      sign_bits(x, g.length, row.data());
      code_stream::write_codes(codes, code_stream::code_bit(layout, g, sign_format::kBits, h, r, 0), row.data(), g.length,
                               sign_format::kBits);
    }
  }
}

void sign_kernels::decode_optimized(const SignParams& p, const group_format::GroupGrid& g, const std::uint8_t* in,
                                    float* values) {
  const DType sd = p.scale_dtype;
  const group_format::CodeLayout layout = p.layout;
  const auto sec = sign_format::sections(layout, g, sd, in);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  const bool symmetric = p.reconstruction == sign_format::Reconstruction::symmetric;
  if (p.axis == GroupAxis::channel) {
    const std::int64_t width = g.rows;
    const std::int64_t groups_per_row = g.groups_per_row();
    std::vector<float> s(static_cast<std::size_t>(width));
    std::vector<std::uint64_t> col_bit(static_cast<std::size_t>(width));
    const auto tile_bytes = static_cast<std::size_t>(std::min<std::int64_t>(g.group, g.length) * width);
    std::vector<std::uint8_t> tile(tile_bytes), scratch(tile_bytes);
    for (std::int64_t h = 0; h < g.heads; ++h) {
      for (std::int64_t gi = 0; gi < groups_per_row; ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        for (std::int64_t c = 0; c < width; ++c) {
          s[static_cast<std::size_t>(c)] = group_format::get_scalar(scales, (h * width + c) * groups_per_row + gi, sd);
          col_bit[static_cast<std::size_t>(c)] = code_stream::code_bit(layout, g, sign_format::kBits, h, c, j0);
        }
        code_stream::read_columns(codes, tile.data(), n, width, sign_format::kBits, col_bit.data(), scratch.data());
        float* base = values + h * g.head_stride + j0 * width;
        for (std::int64_t t = 0; t < n; ++t) sign_values(tile.data() + t * width, s.data(), symmetric, width, base + t * width);
      }
    }
    return;
  }
  std::vector<std::uint8_t> row(static_cast<std::size_t>(g.length));
  std::vector<float> s(static_cast<std::size_t>(g.length));
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      code_stream::read_codes(codes, code_stream::code_bit(layout, g, sign_format::kBits, h, r, 0), row.data(), g.length,
                              sign_format::kBits);
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const float sg = group_format::get_scalar(scales, g.group_index(h, r, gi), sd);
        std::fill(s.begin() + gi * g.group, s.begin() + gi * g.group + g.group_size(gi), sg);
      }
      sign_values(row.data(), s.data(), symmetric, g.length, values + g.block_offset(h, r, 0));
    }
  }
}

}  // namespace vidkv
