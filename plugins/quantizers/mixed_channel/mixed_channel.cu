// mixed_channel on CUDA (mixed_channel_cuda.h): the channel split by the device mask section, gather and scatter.
#include <cuda_runtime.h>

#include <climits>
#include <cstring>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_cuda.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"

namespace vidkv::mixed_channel_cuda {

namespace {

constexpr int kThreads = 256;
constexpr std::int32_t kInvalid = INT_MIN;  // slot of every channel of a mask that does not have k channels set

unsigned blocks_for(std::int64_t threads) { return static_cast<unsigned>((threads + kThreads - 1) / kThreads); }

// table[m * D + c] = channel_slot(mask, D, m, c), or kInvalid for every channel of a mask without k channels set.
__global__ void slot_table(Split s, std::int32_t* table) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= s.masks * s.channels) return;
  const auto d = static_cast<std::size_t>(s.channels);
  const auto m = static_cast<std::size_t>(t / s.channels), c = static_cast<std::size_t>(t % s.channels);
  const bool valid = mixed_channel_format::mask_rank(s.mask, d, m, d) == static_cast<std::size_t>(s.high);
  table[t] = valid ? mixed_channel_format::channel_slot(s.mask, d, m, c) : kInvalid;
}

// V consecutive elements of one row: one 16-byte access when V * sizeof(E) == 16.
template <class E, int V>
__device__ inline void load_run(const E* p, E (&x)[V]) {
  if constexpr (V * sizeof(E) == 16) {
    const uint4 w = *reinterpret_cast<const uint4*>(p);
    memcpy(x, &w, 16);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] = p[j];
  }
}
template <class E, int V>
__device__ inline void store_run(E* p, const E (&x)[V]) {
  if constexpr (V * sizeof(E) == 16) {
    uint4 w;
    memcpy(&w, x, 16);
    *reinterpret_cast<uint4*>(p) = w;
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) p[j] = x[j];
  }
}

// Thread v takes elements [v * V, v * V + V) of the [rows, D] block (D divisible by V: one row).
template <class E, int V>
__global__ void gather_runs(Split s, const E* in, E* hi, E* lo, const std::int32_t* table, std::int64_t runs) {
  const std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= runs) return;
  const std::int64_t i0 = v * V, row = i0 / s.channels, c0 = i0 % s.channels;
  const std::int32_t* slots = table + (row / s.rows_per_mask) * s.channels + c0;
  const std::int64_t low = s.channels - s.high;
  E x[V];
  load_run<E, V>(in + i0, x);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const std::int32_t slot = slots[j];
    if (slot >= 0) {
      hi[row * s.high + slot] = x[j];
    } else if (slot != kInvalid) {
      lo[row * low + (-1 - slot)] = x[j];
    }
  }
}

template <class E, int V>
__global__ void scatter_runs(Split s, const E* hi, const E* lo, E nan, E* out, const std::int32_t* table,
                             std::int64_t runs) {
  const std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= runs) return;
  const std::int64_t i0 = v * V, row = i0 / s.channels, c0 = i0 % s.channels;
  const std::int32_t* slots = table + (row / s.rows_per_mask) * s.channels + c0;
  const std::int64_t low = s.channels - s.high;
  E x[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const std::int32_t slot = slots[j];
    x[j] = slot >= 0 ? hi[row * s.high + slot] : slot != kInvalid ? lo[row * low + (-1 - slot)] : nan;
  }
  store_run<E, V>(out + i0, x);
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// Calls f(E{}, std::integral_constant<int, V>{}) for the element type of `element_bytes` and the widest run that
// divides a row and suits the alignment of `block` (the full-width side).
template <class F>
void dispatch(int element_bytes, std::int64_t channels, const void* block, F&& f) {
  if (element_bytes == 2) {
    if (channels % 8 == 0 && aligned16(block)) return f(std::uint16_t{}, std::integral_constant<int, 8>{});
    return f(std::uint16_t{}, std::integral_constant<int, 1>{});
  }
  if (channels % 4 == 0 && aligned16(block)) return f(std::uint32_t{}, std::integral_constant<int, 4>{});
  return f(std::uint32_t{}, std::integral_constant<int, 1>{});
}

DeviceBuffer slots_of(const Split& s, cudaStream_t st) {
  DeviceBuffer table(static_cast<std::size_t>(s.masks * s.channels) * sizeof(std::int32_t), st);
  slot_table<<<blocks_for(s.masks * s.channels), kThreads, 0, st>>>(s, table.as<std::int32_t>());
  check_launch("mixed_channel (slot table)");
  return table;
}

}  // namespace

void gather(const Split& s, const void* in, int element_bytes, void* hi, void* lo, void* stream) {
  const std::int64_t elements = s.masks * s.rows_per_mask * s.channels;
  if (elements == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  const DeviceBuffer table = slots_of(s, st);
  dispatch(element_bytes, s.channels, in, [&](auto e, auto v) {
    using E = decltype(e);
    constexpr int V = decltype(v)::value;
    gather_runs<E, V><<<blocks_for(elements / V), kThreads, 0, st>>>(s, static_cast<const E*>(in), static_cast<E*>(hi),
                                                                      static_cast<E*>(lo), table.as<std::int32_t>(),
                                                                      elements / V);
  });
  check_launch("mixed_channel gather");
}

void scatter(const Split& s, const void* hi, const void* lo, int element_bytes, std::uint32_t nan_bits, void* out,
             void* stream) {
  const std::int64_t elements = s.masks * s.rows_per_mask * s.channels;
  if (elements == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  const DeviceBuffer table = slots_of(s, st);
  dispatch(element_bytes, s.channels, out, [&](auto e, auto v) {
    using E = decltype(e);
    constexpr int V = decltype(v)::value;
    scatter_runs<E, V><<<blocks_for(elements / V), kThreads, 0, st>>>(s, static_cast<const E*>(hi), static_cast<const E*>(lo),
                                                                       static_cast<E>(nan_bits), static_cast<E*>(out),
                                                                       table.as<std::int32_t>(), elements / V);
  });
  check_launch("mixed_channel scatter");
}

}  // namespace vidkv::mixed_channel_cuda
