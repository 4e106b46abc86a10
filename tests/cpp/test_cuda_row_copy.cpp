// [cuda] The batched row copy of the live cache (core/cuda/row_copy.h):
// copy_rows_batch writes what a scalar host loop over the same copies writes
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
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t ch = 0; ch < c.n * channels; ++ch) {
          const float v = load_as_float(
              host_src[static_cast<std::size_t>(s)].data(), src_types[s],
              static_cast<std::size_t>(
                  (h * src_tokens + c.src_begin) * channels + ch));
          store_from_float(host_dst[static_cast<std::size_t>(d)].data(),
                           dst_types[d],
                           static_cast<std::size_t>(
                               (h * dst_tokens + c.dst_begin) * channels + ch),
                           round_to_dtype(v, c.round));
        }
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
#endif
