// [cuda] The row copies of the cache lifecycle (core/cuda/row_copy.h):
// copy_rows writes what a scalar host loop writes, for every dtype pair and
// rounding, row offsets on both sides and more heads than the kernel's grid has
// rows (65,535); copy_rows_batch writes what a scalar host loop over the same copies writes
// (read as fp32, rounded to `round`, stored as the destination dtype), for more
// copies than one launch takes (kMaxRowCopies), mixed dtypes, copies of zero
// tokens and untouched rows in between; with 5 channels every copy goes value
// by value, with 8 the same-dtype copies without rounding go 16 bytes at a
// time.
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "catch.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/dtype.h"
#ifdef VIDKV_WITH_CUDA
#include "vidkv/core/cuda/row_copy.h"
#endif

using namespace vidkv;

#ifdef VIDKV_WITH_CUDA
namespace {

// dst rows [dst_begin, +n) of every head <- src rows [src_begin, +n), by the
// scalar loop that row_copy.h describes, into host copies of both buffers.
void copy_rows_on_host(std::vector<std::uint8_t>& dst, DType dst_type,
                       std::int64_t dst_tokens, std::int64_t dst_begin,
                       const std::vector<std::uint8_t>& src, DType src_type,
                       std::int64_t src_tokens, std::int64_t src_begin,
                       std::int64_t heads, std::int64_t n,
                       std::int64_t channels, DType round) {
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < n * channels; ++i) {
      const float v = load_as_float(
          src.data(), src_type,
          static_cast<std::size_t>((h * src_tokens + src_begin) * channels + i));
      store_from_float(
          dst.data(), dst_type,
          static_cast<std::size_t>((h * dst_tokens + dst_begin) * channels + i),
          round_to_dtype(v, round));
    }
}

}  // namespace

TEST_CASE("copy_rows_batch writes the scalar loop's values, over several "
          "launches and mixed dtypes",
          "[cuda]") {
  std::string why;
  if (cuda_device_count(&why) == 0)
    VIDKV_SKIP("no CUDA device: " << why);
  using row_copy_cuda::RowCopy;
  using row_copy_cuda::Rows;
  constexpr std::int64_t heads = 3, src_tokens = 7,
                         dst_tokens = 2 * row_copy_cuda::kMaxRowCopies + 3;
  const DType src_types[] = {DType::f32, DType::f16, DType::bf16};
  const DType dst_types[] = {DType::f16, DType::f32, DType::bf16};
  const DType rounds[] = {DType::f32, DType::f16, DType::bf16};
  for (const std::int64_t channels : {std::int64_t{5}, std::int64_t{8}}) {
    INFO(channels << " channels");
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 3.0f);

    // One source of each dtype ([heads, 7, channels]) and one destination of
    // each ([heads, 35, channels], 0xAB bytes everywhere a copy does not
    // write).
    std::vector<std::vector<std::uint8_t>> host_src(3), host_dst(3);
    std::vector<DeviceBuffer> dev_src, dev_dst;
    for (int i = 0; i < 3; ++i) {
      host_src[i].resize(
          static_cast<std::size_t>(heads * src_tokens * channels) *
          dtype_size(src_types[i]));
      for (std::size_t e = 0; e < host_src[i].size() / dtype_size(src_types[i]);
           ++e)
        store_from_float(host_src[i].data(), src_types[i], e, normal(rng));
      host_dst[i].assign(
          static_cast<std::size_t>(heads * dst_tokens * channels) *
              dtype_size(dst_types[i]),
          0xAB);
      dev_src.emplace_back(host_src[i].size());
      dev_dst.emplace_back(host_dst[i].size());
      copy_to_device(dev_src.back().data(), host_src[i].data(),
                     host_src[i].size());
      copy_to_device(dev_dst.back().data(), host_dst[i].data(),
                     host_dst[i].size());
    }

    // 2 * kMaxRowCopies + 1 copies (three launches), copy j writing destination
    // row j of destination j % 3 from a source row of source (j / 3) % 3, with
    // every rounding; each fourth copies zero tokens (skipped).
    std::vector<RowCopy> copies;
    for (int j = 0; j <= 2 * row_copy_cuda::kMaxRowCopies; ++j) {
      const int d = j % 3, s = (j / 3) % 3;
      RowCopy c;
      c.dst = Rows{dev_dst[static_cast<std::size_t>(d)].data(), dst_types[d],
                   dst_tokens};
      c.dst_begin = j;
      c.src = Rows{dev_src[static_cast<std::size_t>(s)].data(), src_types[s],
                   src_tokens};
      c.src_begin = j % src_tokens;
      c.n = j % 4 == 3 ? 0 : 1;
      c.round = rounds[(j / 9) % 3];
      copies.push_back(c);
      copy_rows_on_host(host_dst[static_cast<std::size_t>(d)], dst_types[d],
                        dst_tokens, c.dst_begin,
                        host_src[static_cast<std::size_t>(s)], src_types[s],
                        src_tokens, c.src_begin, heads, c.n, channels, c.round);
    }
    row_copy_cuda::copy_rows_batch(copies.data(), copies.size(), heads,
                                   channels, nullptr);
    for (int i = 0; i < 3; ++i) {
      std::vector<std::uint8_t> got(
          host_dst[static_cast<std::size_t>(i)].size());
      copy_to_host(got.data(), dev_dst[static_cast<std::size_t>(i)].data(),
                   got.size());
      INFO("destination " << dtype_name(dst_types[i]));
      CHECK(got == host_dst[static_cast<std::size_t>(i)]);
    }
  }
}

namespace {

// copy_rows from a random source of `src_type` into a 0xAB-filled destination
// of `dst_type`, against copy_rows_on_host; true when every byte agrees.
bool copy_rows_matches(DType src_type, DType dst_type, DType round,
                       std::int64_t heads, std::int64_t channels,
                       std::int64_t src_tokens, std::int64_t src_begin,
                       std::int64_t dst_tokens, std::int64_t dst_begin,
                       std::int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<std::uint8_t> src(
      static_cast<std::size_t>(heads * src_tokens * channels) *
      dtype_size(src_type));
  for (std::size_t e = 0; e < src.size() / dtype_size(src_type); ++e)
    store_from_float(src.data(), src_type, e, normal(rng));
  std::vector<std::uint8_t> want(
      static_cast<std::size_t>(heads * dst_tokens * channels) *
          dtype_size(dst_type),
      0xAB);
  DeviceBuffer dev_src(src.size()), dev_dst(want.size());
  copy_to_device(dev_src.data(), src.data(), src.size());
  copy_to_device(dev_dst.data(), want.data(), want.size());
  row_copy_cuda::copy_rows({dev_dst.data(), dst_type, dst_tokens}, dst_begin,
                           {dev_src.data(), src_type, src_tokens}, src_begin,
                           heads, n, channels, round, nullptr);
  copy_rows_on_host(want, dst_type, dst_tokens, dst_begin, src, src_type,
                    src_tokens, src_begin, heads, n, channels, round);
  std::vector<std::uint8_t> got(want.size());
  copy_to_host(got.data(), dev_dst.data(), got.size());
  return got == want;
}

}  // namespace

TEST_CASE("copy_rows writes the scalar loop's values for every dtype pair and "
          "rounding, with row offsets and more heads than grid rows",
          "[cuda]") {
  std::string why;
  if (cuda_device_count(&why) == 0)
    VIDKV_SKIP("no CUDA device: " << why);
  const DType types[] = {DType::f32, DType::f16, DType::bf16};
  std::mt19937 rng(11);
  // 3 heads of 40 source and 50 destination rows, 24 rows copied from row 9
  // to row 17 (the rows before and after stay 0xAB), 8 and 5 channels: every
  // source, destination and rounding, the same-dtype unrounded pairs through
  // cudaMemcpy2DAsync and the rest through the kernel.
  for (const std::int64_t channels : {std::int64_t{8}, std::int64_t{5}})
    for (const DType s : types)
      for (const DType d : types)
        for (const DType r : types) {
          INFO(channels << " channels, " << dtype_name(s) << " -> "
                        << dtype_name(d) << ", rounded to " << dtype_name(r));
          CHECK(copy_rows_matches(s, d, r, 3, channels, 40, 9, 50, 17, 24, rng));
        }
  // 3 heads of 128 channels, 4,000 rows copied from row 7 of 5,000 to row 100
  // of 6,000: 512,000 values per head, several x blocks per head striding
  // over them, at offsets on both sides.
  CHECK(copy_rows_matches(DType::bf16, DType::f16, DType::f16, 3, 128, 5000, 7,
                          6000, 100, 4000, rng));
  // 65,537 heads of one channel (the grid's y dimension holds 65,535 rows: the
  // last two heads go by the kernel's head loop), one row of two from row 1 to
  // row 0 of three.
  CHECK(copy_rows_matches(DType::f16, DType::f32, DType::f32, 65537, 1, 2, 1, 3,
                          0, 1, rng));
  // One head of a 32k-token layer (4 Mi values: several per thread), fp16 ->
  // fp32, as the keys that a LayerCache exposes to the token protectors.
  CHECK(copy_rows_matches(DType::f16, DType::f32, DType::f32, 1, 128, 32768, 0,
                          32768, 0, 32768, rng));
}
#endif
