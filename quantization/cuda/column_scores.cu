// The channel selectors' scores on CUDA (column_scores_cuda.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "vidkv/core/cuda/dependent_launch.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/quantization/column_scores.h"
#include "vidkv/quantization/cuda/column_scores_cuda.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"

namespace vidkv::column_scores_cuda {

namespace {

using column_scores::Extrema;

constexpr int kRangeThreads = 256;

// Stage 1 of range: block (chunk, scope) takes rows [chunk * chunk_rows, +chunk_rows) of its scope (a row is one
// token of one head, heads in order); thread (tx, ty) runs over channel tx (+ k * blockDim.x) of the sub-run ty of
// those rows, in row order; the sub-runs are merged in order in shared memory and the chunk's extrema written to
// partial[(scope * chunks + chunk) * channels + c]. A warp reads 32 consecutive channels of one row (coalesced).
template <DType T>
__global__ void range_partial(const void* in, std::int64_t channels, std::int64_t scope_rows, std::int64_t chunk_rows,
                              Extrema* partial) {
  __shared__ Extrema sub[kRangeThreads];
  const std::int64_t chunk = blockIdx.x, scope = blockIdx.y, chunks = gridDim.x;
  const std::int64_t r0 = chunk * chunk_rows, r1 = min(scope_rows, r0 + chunk_rows);
  const std::int64_t sub_rows = (chunk_rows + blockDim.y - 1) / blockDim.y;
  const std::int64_t s0 = min(r1, r0 + threadIdx.y * sub_rows), s1 = min(r1, s0 + sub_rows);
  const std::int64_t scope_base = scope * scope_rows * channels;
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  for (std::int64_t c0 = 0; c0 < channels; c0 += blockDim.x) {
    const std::int64_t c = c0 + threadIdx.x;
    Extrema e{INFINITY, -INFINITY};
    if (c < channels) {
      const std::int64_t base = scope_base + c;
#pragma unroll 4
      for (std::int64_t r = s0; r < s1; ++r) e = column_scores::extrema_add(e, group_cuda::load<T>(in, base + r * channels));
    }
    __syncthreads();  // sub[] of the previous channel tile has been read
    sub[tid] = e;
    __syncthreads();
    if (threadIdx.y == 0 && c < channels) {
      for (unsigned y = 1; y < blockDim.y; ++y) e = column_scores::extrema_merge(e, sub[y * blockDim.x + threadIdx.x]);
      partial[(scope * chunks + chunk) * channels + c] = e;
    }
  }
}

// The rows [s0, s1) of a range partial thread's sub-run (threadIdx.y's share of chunk blockIdx.x of scope blockIdx.y)
// and its first 16-byte vector of V channels (rows are 16-byte multiples, blockDim.x * V == channels).
struct SubRun {
  std::int64_t s0, s1, row_vectors;
  const uint4* rows;  // row r's vector: rows[r * row_vectors]
};

template <int V>
__device__ SubRun sub_run(const void* in, std::int64_t channels, std::int64_t scope_rows, std::int64_t chunk_rows) {
  const std::int64_t chunk = blockIdx.x, scope = blockIdx.y;
  const std::int64_t r0 = chunk * chunk_rows, r1 = min(scope_rows, r0 + chunk_rows);
  const std::int64_t sub_rows = (chunk_rows + blockDim.y - 1) / blockDim.y;
  SubRun run;
  run.s0 = min(r1, r0 + threadIdx.y * sub_rows);
  run.s1 = min(r1, run.s0 + sub_rows);
  run.row_vectors = channels / V;  // == blockDim.x
  run.rows = static_cast<const uint4*>(in) + scope * scope_rows * run.row_vectors + threadIdx.x;
  return run;
}

// The end of a range partial pass: the sub-runs' extrema of the thread's V channels (e) merged in sub-run order (row
// order) through shared memory sub ([blockDim.y * blockDim.x * V]) by row 0, which writes the chunk's partial.
template <int V>
__device__ void merge_sub_runs(Extrema (&e)[V], Extrema* sub, std::int64_t channels, Extrema* partial) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
  for (int j = 0; j < V; ++j) sub[tid * V + j] = e[j];
  __syncthreads();
  if (threadIdx.y != 0) return;
  for (unsigned y = 1; y < blockDim.y; ++y)
#pragma unroll
    for (int j = 0; j < V; ++j) e[j] = column_scores::extrema_merge(e[j], sub[(y * blockDim.x + threadIdx.x) * V + j]);
  const std::int64_t chunk = blockIdx.x, scope = blockIdx.y, chunks = gridDim.x;
#pragma unroll
  for (int j = 0; j < V; ++j) partial[(scope * chunks + chunk) * channels + threadIdx.x * V + j] = e[j];
}

// Stage 1 of range, vectorised: thread (tx, ty) takes the V consecutive channels [tx * V, tx * V + V) (one 16-byte
// load per row: 8 fp16/bf16 or 4 fp32 values; rows are 16-byte multiples, blockDim.x * V == channels) of the
// sub-run ty, in row order, then the sub-runs are merged in order as in range_partial.
template <DType T, int V>
__global__ void range_partial_vec(const void* in, std::int64_t channels, std::int64_t scope_rows, std::int64_t chunk_rows,
                                  Extrema* partial) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  extern __shared__ Extrema sub_vec[];  // [blockDim.y * blockDim.x * V]
  const SubRun run = sub_run<V>(in, channels, scope_rows, chunk_rows);
  Extrema e[V];
#pragma unroll
  for (int j = 0; j < V; ++j) e[j] = Extrema{INFINITY, -INFINITY};
#pragma unroll 4
  for (std::int64_t r = run.s0; r < run.s1; ++r) {
    const uint4 w = run.rows[r * run.row_vectors];
    const std::uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int j = 0; j < V; ++j) {
      float x;
      if constexpr (T == DType::f32) {
        x = bits_float(words[j]);
      } else {
        const auto half = static_cast<std::uint16_t>(words[j / 2] >> (16 * (j % 2)));
        x = T == DType::f16 ? half_bits_to_float(half) : bf16_bits_to_float(half);
      }
      e[j] = column_scores::extrema_add(e[j], x);
    }
  }
  merge_sub_runs(e, sub_vec, channels, partial);
}

// Stage 1 of range for fp16 / bf16 input, packed: range_partial_vec with the extrema of each pair of adjacent
// channels kept as two packed 2-byte pairs (the input's own dtype: exact) and updated by __hmin2 / __hmax2, one
// instruction per two values instead of a conversion and two compare-selects per value; 8 rows' loads in flight per
// thread. Same extrema as extrema_add's, except possibly the sign of a zero extremum (the packed min / max need not
// keep the first of -0 and +0): range_score gives +0 for an all-zero channel whichever signs its ends have, and every
// other score is the same double (a zero end of a non-zero range does not change hi - lo). Like extrema_add, the
// packed min / max never admit a NaN (they return the other operand).
template <DType T>
__global__ void range_partial_packed(const void* in, std::int64_t channels, std::int64_t scope_rows, std::int64_t chunk_rows,
                                     Extrema* partial) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  static_assert(T != DType::f32, "2-byte input dtypes");
  using P = std::conditional_t<T == DType::f16, __half2, __nv_bfloat162>;
  constexpr int V = 8;
  extern __shared__ Extrema sub_packed[];  // [blockDim.y * blockDim.x * V]
  const SubRun run = sub_run<V>(in, channels, scope_rows, chunk_rows);
  const std::uint32_t pos_inf = T == DType::f16 ? 0x7C007C00u : 0x7F807F80u, neg_inf = pos_inf | 0x80008000u;
  P lo[4], hi[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    lo[j] = *reinterpret_cast<const P*>(&pos_inf);
    hi[j] = *reinterpret_cast<const P*>(&neg_inf);
  }
#pragma unroll 8
  for (std::int64_t r = run.s0; r < run.s1; ++r) {
    const uint4 w = run.rows[r * run.row_vectors];
    const std::uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      lo[j] = __hmin2(lo[j], *reinterpret_cast<const P*>(&words[j]));
      hi[j] = __hmax2(hi[j], *reinterpret_cast<const P*>(&words[j]));
    }
  }
  const auto widen = [](std::uint32_t pair, int half) {
    const auto b = static_cast<std::uint16_t>(pair >> (16 * half));
    return T == DType::f16 ? half_bits_to_float(b) : bf16_bits_to_float(b);
  };
  Extrema e[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    e[j] = Extrema{widen(*reinterpret_cast<const std::uint32_t*>(&lo[j / 2]), j % 2), widen(*reinterpret_cast<const std::uint32_t*>(&hi[j / 2]), j % 2)};
  }
  merge_sub_runs(e, sub_packed, channels, partial);
}

// Stage 2 of range: block (channel tile, scope) merges the chunks' extrema of kMergeChannels channels; thread (tx, ty)
// takes channel tile * kMergeChannels + tx over the chunks ty, ty + kMergeLanes, ..., then row 0 merges the lanes.
// The merge order differs from the chunk order, and the scores do not depend on it: extrema_merge takes a min and a
// max, which are exact; only the sign of a zero extremum can follow the order (on ties the earlier value stays), and
// hi - lo is the same either way (exact when one end is zero; an all-zero channel gives +0 in any order). No extrema
// hold NaN (extrema_add never admits one: every comparison with NaN is false). So the scores are bit-identical to
// range.cpp's. (The first version gave each score one thread that walked
// all chunks in order: 512 threads with about 130 dependent loads each, 65 us of a 32k-token layer's encode on the
// H200, against the partial pass's 22 us.)
constexpr int kMergeChannels = 32, kMergeLanes = 16;
__global__ void range_merge(const Extrema* partial, std::int64_t channels, std::int64_t chunks, std::int64_t scope_rows,
                            double* scores) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  __shared__ Extrema lanes[kMergeLanes][kMergeChannels];
  const std::int64_t scope = blockIdx.y, c = static_cast<std::int64_t>(blockIdx.x) * kMergeChannels + threadIdx.x;
  Extrema e{INFINITY, -INFINITY};
  if (c < channels) {
#pragma unroll 8  // the loads of 8 chunks in flight ahead of the merges (each a min and a max)
    for (std::int64_t k = threadIdx.y; k < chunks; k += kMergeLanes)
      e = column_scores::extrema_merge(e, partial[(scope * chunks + k) * channels + c]);
  }
  lanes[threadIdx.y][threadIdx.x] = e;
  __syncthreads();
  if (threadIdx.y != 0 || c >= channels) return;
  for (int y = 1; y < kMergeLanes; ++y) e = column_scores::extrema_merge(e, lanes[y][threadIdx.x]);
  scores[scope * channels + c] = column_scores::range_score(e, scope_rows);
}

// One thread per score (scope, channel) for the sequential scorers; few threads per block so that the few hundred
// threads spread over many multiprocessors (each is latency-bound on its own chain of loads and additions).
constexpr int kSequentialThreads = 32;

template <DType T>
__global__ void variance_scores(const void* in, BlockShape shape, std::int64_t hps, double* scores) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t scopes = shape.heads / hps;
  if (t >= scopes * shape.channels) return;
  const std::int64_t scope = t / shape.channels, c = t % shape.channels;
  scores[t] = column_scores::variance(column_scores::column(in, T, shape.tokens, shape.channels, scope * hps, c),
                                      hps * shape.tokens);
}

template <DType T>
__global__ void outlier_scores(const void* in, BlockShape shape, std::int64_t hps, double multiplier, bool absolute,
                               double* scores) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t scopes = shape.heads / hps;
  if (t >= scopes * shape.channels) return;
  const std::int64_t scope = t / shape.channels, c = t % shape.channels;
  scores[t] = column_scores::outlier_count(column_scores::column(in, T, shape.tokens, shape.channels, scope * hps, c),
                                           hps * shape.tokens, multiplier, absolute);
}

// VIDKV_CUDA_RANGE_PARTIAL=scalar selects range_partial_vec for 2-byte input too (A / B measurements).
bool packed_range() {
  static const bool off = env_equals("VIDKV_CUDA_RANGE_PARTIAL", "scalar");
  return !off;
}

unsigned blocks(std::int64_t threads, int per_block) { return static_cast<unsigned>((threads + per_block - 1) / per_block); }

}  // namespace

void range(const void* in, DType dtype, const BlockShape& shape, std::int64_t hps, double* scores, void* stream) {
  const std::int64_t scopes = shape.heads / hps, scope_rows = hps * shape.tokens, channels = shape.channels;
  if (scopes * channels == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  // Chunks: about 4 blocks per multiprocessor of an H100 / H200 (132) over all scopes, each at least 64 rows. 8 and 16
  // were measured slower (H100, 2026-12-07, vidkv-k1.5-v1.58 at 32k: 28.6% and 27.1% of the copy bandwidth for
  // encode + decode, against 29.9-30.0% with 4; docs/performance.md section 8).
  const std::int64_t want = std::max<std::int64_t>(1, 528 / scopes);
  const std::int64_t chunks = std::max<std::int64_t>(1, std::min<std::int64_t>(want, (scope_rows + 63) / 64));
  const std::int64_t chunk_rows = std::max<std::int64_t>(1, (scope_rows + chunks - 1) / chunks);
  DeviceBuffer partial(static_cast<std::size_t>(scopes * chunks * channels) * sizeof(Extrema), stream);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(scopes));
  const std::int64_t per_vector = 16 / dtype_size(dtype);  // values per 16-byte load
  const bool vectors = channels % per_vector == 0 && channels / per_vector <= kRangeThreads &&
                       (reinterpret_cast<std::uintptr_t>(in) & 15u) == 0;
  group_cuda::dispatch_dtype(dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    if (vectors) {
      // x: the 16-byte vectors of a row; y: sub-runs of rows.
      constexpr int V = T == DType::f32 ? 4 : 8;
      const unsigned bx = static_cast<unsigned>(channels / V), by = kRangeThreads / bx;
      if constexpr (T != DType::f32) {
        if (packed_range())
          dependent_launch::launch_dependent<range_partial_packed<T>>(grid, dim3(bx, by), bx * by * V * sizeof(Extrema), st, in, channels, scope_rows,
                                                                      chunk_rows, partial.as<Extrema>());
        else
          dependent_launch::launch_dependent<range_partial_vec<T, V>>(grid, dim3(bx, by), bx * by * V * sizeof(Extrema), st, in, channels, scope_rows,
                                                                      chunk_rows, partial.as<Extrema>());
      } else {
        dependent_launch::launch_dependent<range_partial_vec<T, V>>(grid, dim3(bx, by), bx * by * V * sizeof(Extrema), st, in, channels, scope_rows,
                                                                    chunk_rows, partial.as<Extrema>());
      }
    } else {
      // x over channels (a multiple of 32, at most 256), y over sub-runs of rows.
      const unsigned bx = static_cast<unsigned>(std::min<std::int64_t>(kRangeThreads, (channels + 31) / 32 * 32));
      range_partial<T><<<grid, dim3(bx, kRangeThreads / bx), 0, st>>>(in, channels, scope_rows, chunk_rows,
                                                                        partial.as<Extrema>());
    }
  });
  check_launch("range selector (partial extrema)");
  const dim3 merge_grid(blocks(channels, kMergeChannels), static_cast<unsigned>(scopes));
  dependent_launch::launch_dependent<range_merge>(merge_grid, dim3(kMergeChannels, kMergeLanes), 0, st, partial.as<Extrema>(), channels, chunks, scope_rows,
                                                                        scores);
  check_launch("range selector (merge)");
}

void variance(const void* in, DType dtype, const BlockShape& shape, std::int64_t hps, double* scores, void* stream) {
  const std::int64_t n = shape.heads / hps * shape.channels;
  if (n == 0) return;
  group_cuda::dispatch_dtype(dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    variance_scores<T><<<blocks(n, kSequentialThreads), kSequentialThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        in, shape, hps, scores);
  });
  check_launch("variance selector");
}

void outlier(const void* in, DType dtype, const BlockShape& shape, std::int64_t hps, double multiplier, bool absolute,
             double* scores, void* stream) {
  const std::int64_t n = shape.heads / hps * shape.channels;
  if (n == 0) return;
  group_cuda::dispatch_dtype(dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    outlier_scores<T><<<blocks(n, kSequentialThreads), kSequentialThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        in, shape, hps, multiplier, absolute, scores);
  });
  check_launch("outlier selector");
}

}  // namespace vidkv::column_scores_cuda
