// ternary on CUDA (ternary_cuda.h): bytes bit-identical to the CPU reference (ternary.cpp).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/group_cuda.cuh"
#include "vidkv/plugins/quantizers/ternary/ternary_cuda.h"

namespace vidkv::ternary_cuda {

namespace {

using group_cuda::AlignedWordLoad;
using group_cuda::AlignedWordStore;
using group_format::CodeLayout;
using group_format::GroupAxis;
using group_format::GroupGrid;
using ternary_format::Packing;
using ternary_format::Reconstruction;

struct Sections {
  std::uint8_t* codes;
  std::uint8_t* scales;
  std::uint8_t* mins;
};

__host__ __device__ constexpr CodeLayout slot_layout(Packing p) {
  return p == Packing::slots2 ? CodeLayout::dense : CodeLayout::release;
}

// One group per thread: mean |x| and the dead zone (double, the reference's order), the scale / release min, and
// with kWordRuns the 2-bit slots. Otherwise the dead zone goes to `dead_zones` for encode_code_bytes.
template <DType T, bool kWordRuns>
__global__ void encode_groups(const void* in, GroupGrid g, GroupAxis axis, double gamma, Reconstruction rec, Packing p,
                              DType sd, Sections s, double* dead_zones) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.group_count()) return;
  const auto c = group_cuda::group_of_thread(g, axis, t);
  const std::int64_t j0 = c.gi * g.group, n = g.group_size(c.gi);
  double sum_abs = 0.0;
  for (std::int64_t j = j0; j < j0 + n; ++j) sum_abs += fabs(static_cast<double>(group_cuda::load<T>(in, g.block_offset(c.h, c.r, j))));
  const double mean_abs = sum_abs / static_cast<double>(n);
  const double dead_zone = gamma * mean_abs;
  const std::int64_t gidx = g.group_index(c.h, c.r, c.gi);
  double sum_kept = 0.0;
  std::int64_t kept = 0;
  group_format::WordRunWriter<AlignedWordStore> w(AlignedWordStore{reinterpret_cast<std::uint32_t*>(s.codes)},
                                                  kWordRuns ? group_format::code_word(slot_layout(p), g, 2, c.h, c.r, j0) : 0, 2);
  for (std::int64_t j = j0; j < j0 + n; ++j) {
    const double x = group_cuda::load<T>(in, g.block_offset(c.h, c.r, j));
    const int tr = ternary_format::ternarize(x, dead_zone);
    if constexpr (kWordRuns) w.put(static_cast<unsigned>(tr + 1));
    if (tr != 0) {
      sum_kept += fabs(x);
      ++kept;
    }
  }
  if constexpr (kWordRuns) w.flush();
  else dead_zones[gidx] = dead_zone;
  if (ternary_format::has_scales(p, rec)) {
    const double scale = rec == Reconstruction::scaled ? (kept ? sum_kept / static_cast<double>(kept) : 0.0) : mean_abs;
    group_format::put_scalar(s.scales, gidx, sd, static_cast<float>(scale));
  }
  if (p == Packing::release) group_format::put_scalar(s.mins, gidx, sd, ternary_format::kReleaseMin);
}

// The trit of element j of row r of head h, from the stored dead zone of its group.
template <DType T>
__device__ inline int trit_of(const void* in, const GroupGrid& g, const double* dead_zones, std::int64_t h, std::int64_t r,
                              std::int64_t j) {
  return ternary_format::ternarize(group_cuda::load<T>(in, g.block_offset(h, r, j)), dead_zones[g.group_index(h, r, j / g.group)]);
}

// One byte of the codes section per thread: base3 (5 trits, digit k weighted 3^k) or 2-bit slots.
template <DType T>
__global__ void encode_code_bytes(const void* in, GroupGrid g, Packing p, const double* dead_zones, std::uint8_t* codes,
                                  group_cuda::ByteMap map) {
  const std::int64_t b = map.byte_of_thread(static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
  if (b < 0) return;
  if (p == Packing::base3) {
    unsigned byte = 0, weight = 1;
    for (std::int64_t i = 5 * b; i < 5 * b + 5 && i < g.elements(); ++i, weight *= 3u) {
      const std::int64_t row = i / g.length;
      byte += static_cast<unsigned>(trit_of<T>(in, g, dead_zones, row / g.rows, row % g.rows, i % g.length) + 1) * weight;
    }
    codes[b] = static_cast<std::uint8_t>(byte);
    return;
  }
  codes[b] = group_format::code_byte(slot_layout(p), g, 2, b, [&](std::int64_t h, std::int64_t r, std::int64_t j) {
    return static_cast<unsigned>(trit_of<T>(in, g, dead_zones, h, r, j) + 1);
  });
}

template <DType O, bool kWordRuns>
__global__ void decode_groups(const std::uint8_t* codes, const std::uint8_t* scales, GroupGrid g, GroupAxis axis,
                              Reconstruction rec, Packing p, DType sd, void* out) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.group_count()) return;
  const auto c = group_cuda::group_of_thread(g, axis, t);
  const std::int64_t j0 = c.gi * g.group, n = g.group_size(c.gi);
  const float u = rec == Reconstruction::scaled ? group_format::get_scalar(scales, g.group_index(c.h, c.r, c.gi), sd) : 1.0f;
  if constexpr (kWordRuns) {
    group_format::WordRunReader<AlignedWordLoad> rd(AlignedWordLoad{reinterpret_cast<const std::uint32_t*>(codes)},
                                                    group_format::code_word(slot_layout(p), g, 2, c.h, c.r, j0), 2);
    for (std::int64_t j = j0; j < j0 + n; ++j)
      store_from_float(out, O, static_cast<std::size_t>(g.block_offset(c.h, c.r, j)),
                       static_cast<float>(static_cast<int>(rd.next()) - 1) * u);
  } else {
    for (std::int64_t j = j0; j < j0 + n; ++j)
      store_from_float(out, O, static_cast<std::size_t>(g.block_offset(c.h, c.r, j)),
                       static_cast<float>(ternary_format::get_trit(p, codes, g, c.h, c.r, j)) * u);
  }
}

GroupGrid grid_of(const Config& c, const BlockShape& shape) {
  return group_format::make_group_grid(c.axis, shape.heads, shape.tokens, shape.channels, c.group);
}

bool word_runs(const Config& c, const GroupGrid& g, const void* codes) {
  return c.packing != Packing::base3 && group_format::word_aligned_groups(slot_layout(c.packing), g, 2) &&
         group_cuda::aligned4(codes);
}

}  // namespace

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream) {
  const GroupGrid g = grid_of(c, shape);
  if (g.group_count() == 0) return;
  const std::size_t code_bytes = ternary_format::codes_bytes(c.packing, g);
  const std::size_t scale_bytes = ternary_format::scales_bytes(c.packing, c.reconstruction, g, c.scale_dtype);
  const Sections s{out, out + code_bytes, out + code_bytes + scale_bytes};
  const bool runs = word_runs(c, g, out);
  auto* st = static_cast<cudaStream_t>(stream);
  DeviceBuffer dead_zones(runs ? 0 : static_cast<std::size_t>(g.group_count()) * sizeof(double), stream);
  group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    if (runs) {
      encode_groups<T, true><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, g, c.axis, c.gamma, c.reconstruction, c.packing, c.scale_dtype, s, nullptr);
    } else {
      encode_groups<T, false><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, g, c.axis, c.gamma, c.reconstruction, c.packing, c.scale_dtype, s, dead_zones.as<double>());
      check_launch("ternary encode (statistics)");
      const group_cuda::ByteMap map =
          c.packing == Packing::base3
              ? group_cuda::ByteMap{c.axis, g.row_count(), g.length, 1, 5, 0, static_cast<std::int64_t>(code_bytes)}
              : group_cuda::code_byte_map(slot_layout(c.packing), g, c.axis, 2);
      encode_code_bytes<T><<<group_cuda::blocks_for(map.threads()), group_cuda::kThreads, 0, st>>>(
          in, g, c.packing, dead_zones.as<double>(), out, map);
    }
  });
  check_launch("ternary encode");
}

void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream) {
  const GroupGrid g = grid_of(c, shape);
  if (g.group_count() == 0) return;
  const std::uint8_t* scales = in + ternary_format::codes_bytes(c.packing, g);
  const bool runs = word_runs(c, g, in);
  auto* st = static_cast<cudaStream_t>(stream);
  group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
    constexpr DType O = decltype(tag)::value;
    if (runs)
      decode_groups<O, true><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, scales, g, c.axis, c.reconstruction, c.packing, c.scale_dtype, out);
    else
      decode_groups<O, false><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, scales, g, c.axis, c.reconstruction, c.packing, c.scale_dtype, out);
  });
  check_launch("ternary decode");
}

}  // namespace vidkv::ternary_cuda
