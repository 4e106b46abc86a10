// uniform on CUDA (uniform_cuda.h): one thread per group; bytes bit-identical to the CPU reference (uniform.cpp).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/group_cuda.cuh"
#include "vidkv/plugins/quantizers/uniform/uniform_cuda.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"

namespace vidkv::uniform_cuda {

namespace {

using group_cuda::AlignedWordLoad;
using group_cuda::AlignedWordStore;
using group_format::CodeLayout;
using group_format::GroupAxis;
using group_format::GroupGrid;

struct Sections {
  std::uint8_t* codes;
  std::uint8_t* scales;
  std::uint8_t* mins;
};

// Statistics (and, when word_runs, the codes) of one group per thread. Without word_runs the codes are written by
// encode_code_bytes once every group's scale and min are stored.
template <DType T, bool kWordRuns>
__global__ void encode_groups(const void* in, GroupGrid g, GroupAxis axis, unsigned bits, DType sd, CodeLayout layout,
                              Sections s) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.group_count()) return;
  const auto c = group_cuda::group_of_thread(g, axis, t);
  const std::int64_t j0 = c.gi * g.group, n = g.group_size(c.gi);
  float mn = group_cuda::load<T>(in, g.block_offset(c.h, c.r, j0)), mx = mn;
  for (std::int64_t j = j0 + 1; j < j0 + n; ++j) {
    const float x = group_cuda::load<T>(in, g.block_offset(c.h, c.r, j));
    mn = x < mn ? x : mn;
    mx = x > mx ? x : mx;
  }
  const uniform_format::StoredRange range = uniform_format::stored_range(mn, mx, bits, sd);
  const std::int64_t gidx = g.group_index(c.h, c.r, c.gi);
  group_format::put_scalar(s.scales, gidx, sd, range.scale);
  group_format::put_scalar(s.mins, gidx, sd, range.min);
  if constexpr (kWordRuns) {
    group_format::WordRunWriter<AlignedWordStore> w(AlignedWordStore{reinterpret_cast<std::uint32_t*>(s.codes)},
                                                    group_format::code_word(layout, g, bits, c.h, c.r, j0), bits);
    for (std::int64_t j = j0; j < j0 + n; ++j)
      w.put(uniform_format::encode_value(group_cuda::load<T>(in, g.block_offset(c.h, c.r, j)), range.scale, range.min, bits));
    w.flush();
  }
}

// One byte of the codes section per thread, from the stored scales and mins (any alignment, tails, any bits).
template <DType T>
__global__ void encode_code_bytes(const void* in, GroupGrid g, unsigned bits, DType sd, CodeLayout layout, Sections s,
                                  std::int64_t code_bytes) {
  const std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= code_bytes) return;
  s.codes[b] = group_format::code_byte(layout, g, bits, b, [&](std::int64_t h, std::int64_t r, std::int64_t j) {
    const std::int64_t gidx = g.group_index(h, r, j / g.group);
    return uniform_format::encode_value(group_cuda::load<T>(in, g.block_offset(h, r, j)),
                                        group_format::get_scalar(s.scales, gidx, sd),
                                        group_format::get_scalar(s.mins, gidx, sd), bits);
  });
}

template <DType O, bool kWordRuns>
__global__ void decode_groups(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, GroupGrid g,
                              GroupAxis axis, unsigned bits, DType sd, CodeLayout layout, void* out) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.group_count()) return;
  const auto c = group_cuda::group_of_thread(g, axis, t);
  const std::int64_t j0 = c.gi * g.group, n = g.group_size(c.gi);
  const std::int64_t gidx = g.group_index(c.h, c.r, c.gi);
  const float scale = group_format::get_scalar(scales, gidx, sd), mn = group_format::get_scalar(mins, gidx, sd);
  if constexpr (kWordRuns) {
    group_format::WordRunReader<AlignedWordLoad> rd(AlignedWordLoad{reinterpret_cast<const std::uint32_t*>(codes)},
                                                    group_format::code_word(layout, g, bits, c.h, c.r, j0), bits);
    for (std::int64_t j = j0; j < j0 + n; ++j)
      store_from_float(out, O, static_cast<std::size_t>(g.block_offset(c.h, c.r, j)), uniform_format::decode_value(rd.next(), scale, mn));
  } else {
    for (std::int64_t j = j0; j < j0 + n; ++j)
      store_from_float(out, O, static_cast<std::size_t>(g.block_offset(c.h, c.r, j)),
                       uniform_format::decode_value(group_format::get_code(layout, codes, g, bits, c.h, c.r, j), scale, mn));
  }
}

GroupGrid grid_of(const Config& c, const BlockShape& shape) {
  return group_format::make_group_grid(c.axis, shape.heads, shape.tokens, shape.channels, c.group);
}

}  // namespace

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream) {
  const GroupGrid g = grid_of(c, shape);
  if (g.group_count() == 0) return;
  const std::size_t code_bytes = uniform_format::codes_bytes(c.layout, g, c.bits);
  const Sections s{out, out + code_bytes, out + code_bytes + uniform_format::scales_bytes(g, c.scale_dtype)};
  const bool word_runs = group_format::word_aligned_groups(c.layout, g, c.bits) && group_cuda::aligned4(out);
  auto* st = static_cast<cudaStream_t>(stream);
  group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    if (word_runs) {
      encode_groups<T, true><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, g, c.axis, c.bits, c.scale_dtype, c.layout, s);
    } else {
      encode_groups<T, false><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, g, c.axis, c.bits, c.scale_dtype, c.layout, s);
      check_launch("uniform encode (statistics)");
      encode_code_bytes<T><<<group_cuda::blocks_for(static_cast<std::int64_t>(code_bytes)), group_cuda::kThreads, 0, st>>>(
          in, g, c.bits, c.scale_dtype, c.layout, s, static_cast<std::int64_t>(code_bytes));
    }
  });
  check_launch("uniform encode");
}

void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream) {
  const GroupGrid g = grid_of(c, shape);
  if (g.group_count() == 0) return;
  const std::size_t code_bytes = uniform_format::codes_bytes(c.layout, g, c.bits);
  const std::uint8_t* scales = in + code_bytes;
  const std::uint8_t* mins = scales + uniform_format::scales_bytes(g, c.scale_dtype);
  const bool word_runs = group_format::word_aligned_groups(c.layout, g, c.bits) && group_cuda::aligned4(in);
  auto* st = static_cast<cudaStream_t>(stream);
  group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
    constexpr DType O = decltype(tag)::value;
    if (word_runs)
      decode_groups<O, true><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, scales, mins, g, c.axis, c.bits, c.scale_dtype, c.layout, out);
    else
      decode_groups<O, false><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, scales, mins, g, c.axis, c.bits, c.scale_dtype, c.layout, out);
  });
  check_launch("uniform decode");
}

}  // namespace vidkv::uniform_cuda
