// Device helpers shared by the CUDA kernels of the grouped quantizers (uniform, sign, ternary): the thread -> group
// mapping, dtype dispatch, aligned word stores for WordRunWriter / loads for WordRunReader. CUDA sources only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "vidkv/core/dtype.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/group_format.h"

namespace vidkv::group_cuda {

using group_format::GroupAxis;
using group_format::GroupGrid;

constexpr int kThreads = 256;

// Coordinates (head, row, group) of the t-th thread's group. Axis channel: row (channel) fastest, so a warp reads
// 32 adjacent channels of the same tokens; axis token: group fastest (contiguous channels of one token).
struct GroupCoords {
  std::int64_t h, r, gi;
};
__device__ inline GroupCoords group_of_thread(const GroupGrid& g, GroupAxis axis, std::int64_t t) {
  const std::int64_t gpr = g.groups_per_row();
  if (axis == GroupAxis::channel) {
    const std::int64_t r = t % g.rows, rest = t / g.rows;
    return {rest / gpr, r, rest % gpr};
  }
  const std::int64_t gi = t % gpr, rest = t / gpr;
  return {rest / g.rows, rest % g.rows, gi};
}

inline unsigned blocks_for(std::int64_t threads) { return static_cast<unsigned>((threads + kThreads - 1) / kThreads); }

// Element i of a device buffer of dtype T as fp32 (exact).
template <DType T>
__device__ inline float load(const void* p, std::int64_t i) {
  return load_as_float(p, T, static_cast<std::size_t>(i));
}

struct AlignedWordStore {
  std::uint32_t* words;
  __device__ void operator()(std::int64_t w, std::uint32_t v) const { words[w] = v; }
};
struct AlignedWordLoad {
  const std::uint32_t* words;
  __device__ std::uint32_t operator()(std::int64_t w) const { return words[w]; }
};

inline bool aligned4(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 3u) == 0; }

// Calls f(tag) with tag a std::integral_constant<DType, t>: `constexpr DType T = decltype(tag)::value;`.
template <class F>
inline void dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(std::integral_constant<DType, DType::f32>{}); break;
    case DType::f16: f(std::integral_constant<DType, DType::f16>{}); break;
    case DType::bf16: f(std::integral_constant<DType, DType::bf16>{}); break;
  }
}

}  // namespace vidkv::group_cuda
