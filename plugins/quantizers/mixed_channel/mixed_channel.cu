// mixed_channel on CUDA (mixed_channel_cuda.h): the channel split by the device mask section, gather and scatter.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "vidkv/core/cuda/async_copy.cuh"
#include "vidkv/core/cuda/dependent_launch.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_cuda.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_split.h"

namespace vidkv::mixed_channel_cuda {

namespace {

constexpr int kThreads = 256;
constexpr std::int32_t kInvalid = mixed_channel_split::kInvalidSlot;

unsigned blocks_for(std::int64_t threads) { return static_cast<unsigned>((threads + kThreads - 1) / kThreads); }

// The tables of mixed_channel_split.h: one thread per (mask, channel).
struct Tables {
  std::int32_t* slot;         // [masks, D]
  std::int32_t* high_source;  // [masks, k]
  std::int32_t* low_source;   // [masks, D - k]
};
__global__ void fill_tables(Split s, Tables t) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= s.masks * s.channels) return;
  mixed_channel_split::fill_tables(s.mask, s.channels, s.high, i / s.channels, i % s.channels, t.slot, t.high_source,
                                   t.low_source);
}

// One thread per byte of the mask section: its 8 bits (fewer in the last byte) from the ranks of their channels.
__global__ void mask_bytes_from_scores(const double* scores, std::int64_t masks, std::int64_t channels, std::int64_t k,
                                       std::uint8_t* section, std::int64_t bytes) {
  const std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= bytes) return;
  unsigned byte = 0;
  for (int i = 0; i < 8; ++i) {
    const std::int64_t bit = b * 8 + i;
    if (bit >= masks * channels) break;
    const std::int64_t m = bit / channels, c = bit % channels;
    // k == 0 and k == D need no scores (and get none: scores may be null then).
    const bool high = k >= channels || (k > 0 && mixed_channel_split::in_top_k(scores + m * channels, channels, c, k));
    if (high) byte |= 1u << i;
  }
  section[b] = static_cast<std::uint8_t>(byte);
}

// One block per mask when a mask's bits fill whole bytes (D % 8 == 0, so no byte holds bits of two masks) and its
// scores fit in shared memory: the mask's D scores are staged once, each thread ranks channels against the staged
// copy (in_top_k, the same rule), then thread b packs byte b of the mask. The per-byte kernel above has only
// masks * D / 8 threads (64 for 4 heads x 128 channels), each ranking 8 channels against scores in device memory:
// 25 us of a 32k-token layer's encode on the H200 for 9 KiB of scores.
constexpr std::int64_t kMaxStagedChannels = 4096;  // 4096 x (8 + 1) bytes = 36 KiB of shared memory
__global__ void mask_bytes_per_mask(const double* scores, std::int64_t channels, std::int64_t k, std::uint8_t* section) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  extern __shared__ double staged[];  // [channels] scores, then [channels] flags
  auto* high = reinterpret_cast<std::uint8_t*>(staged + channels);
  const std::int64_t m = blockIdx.x;
  const bool ranked = k > 0 && k < channels;  // k == 0 and k == D need no scores (and get none: scores may be null then)
  if (ranked)
    for (std::int64_t c = threadIdx.x; c < channels; c += blockDim.x) staged[c] = scores[m * channels + c];
  __syncthreads();
  for (std::int64_t c = threadIdx.x; c < channels; c += blockDim.x)
    high[c] = k >= channels || (ranked && mixed_channel_split::in_top_k(staged, channels, c, k)) ? 1 : 0;
  __syncthreads();
  for (std::int64_t b = threadIdx.x; b < channels / 8; b += blockDim.x) {
    unsigned byte = 0;
    for (int i = 0; i < 8; ++i) byte |= static_cast<unsigned>(high[b * 8 + i]) << i;
    section[m * (channels / 8) + b] = static_cast<std::uint8_t>(byte);
  }
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
    // An invalid mask's rows move by the split "first k channels high", as the tiled gather's (fill_tables).
    const std::int32_t slot = slots[j] != kInvalid ? slots[j] : mixed_channel_split::fallback_slot(c0 + j, s.high);
    if (slot >= 0) hi[row * s.high + slot] = x[j];
    else lo[row * low + (-1 - slot)] = x[j];
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

// Tiled kernels (the common case: rows of a 16-byte multiple, a tile of rows fits in shared memory). Block b
// takes rows [b * tile_rows, +tile_rows): it stages the tile's side that is read as a whole (the input rows for
// gather; the high and low parts for scatter) in shared memory with coalesced 16-byte asynchronous copies (stage
// issues them, the kernel waits once: core/cuda/async_copy.cuh), then writes the other
// side with coalesced 16-byte stores, each element looked up in shared memory through the tables. Every byte of
// the block and of the child blocks crosses device memory once. tile_rows is a multiple of 8, so every tile's
// part of a child block starts 16-byte aligned (r0 * k * element_bytes, r0 % 8 == 0, element_bytes >= 2).
template <class E>
__device__ inline void stage(E* tile, const E* src, std::int64_t count) {
  constexpr int V = 16 / sizeof(E);
  const std::int64_t vectors = count / V;
  cuda_async::issue16(reinterpret_cast<uint4*>(tile), reinterpret_cast<const uint4*>(src), vectors);
  for (std::int64_t e = vectors * V + threadIdx.x; e < count; e += blockDim.x) tile[e] = src[e];
}

// Writes elements [0, count) of one tile's part of a child block from the staged input rows.
template <class E>
__device__ inline void write_part(E* dst, std::int64_t count, const E* tile, const Split& s, std::int64_t width,
                                  std::int64_t r0, const std::int32_t* source) {
  constexpr int V = 16 / sizeof(E);
  const std::int64_t vectors = count / V;
  if (width % V == 0) {  // a run lies in one row: its V source channels are V consecutive table entries, all loaded
    const auto w32 = static_cast<std::uint32_t>(width);  // before the tile is read (no branch between them)
    for (std::int64_t q = threadIdx.x; q < vectors; q += blockDim.x) {
      const auto e = static_cast<std::uint32_t>(q * V), row = e / w32;  // tile-local: small
      const std::int32_t* from = source + mixed_channel_split::mask_of_row(r0 + row, s.masks, s.rows_per_mask) * width + (e - row * w32);
      std::int32_t c[V];
#pragma unroll
      for (int j = 0; j < V; ++j) c[j] = from[j];
      E x[V];
#pragma unroll
      for (int j = 0; j < V; ++j) x[j] = tile[row * static_cast<std::uint32_t>(s.channels) + static_cast<std::uint32_t>(c[j])];
      store_run<E, V>(dst + q * V, x);
    }
    return;  // count % V == 0: rows of a multiple of V elements
  }
  for (std::int64_t q = threadIdx.x; q < vectors; q += blockDim.x) {
    mixed_channel_split::PartWalk w(s.channels, width, s.masks, s.rows_per_mask, r0, source, q * V);
    E x[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      x[j] = tile[w.tile_index()];
      w.next();
    }
    store_run<E, V>(dst + q * V, x);
  }
  for (std::int64_t e = vectors * V + threadIdx.x; e < count; e += blockDim.x)
    dst[e] = tile[mixed_channel_split::PartWalk(s.channels, width, s.masks, s.rows_per_mask, r0, source, e).tile_index()];
}

template <class E>
__global__ void gather_tiles(Split s, const E* in, E* hi, E* lo, Tables t, std::int64_t rows, std::int64_t tile_rows) {
  extern __shared__ uint4 shared_tile[];
  E* tile = reinterpret_cast<E*>(shared_tile);
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * tile_rows, nr = min(tile_rows, rows - r0);
  const std::int64_t low = s.channels - s.high;
  stage(tile, in + r0 * s.channels, nr * s.channels);
  cuda_async::wait_all();
  __syncthreads();
  if (s.high > 0) write_part(hi + r0 * s.high, nr * s.high, tile, s, s.high, r0, t.high_source);
  if (low > 0) write_part(lo + r0 * low, nr * low, tile, s, low, r0, t.low_source);
}

template <class E>
__global__ void scatter_tiles(Split s, const E* hi, const E* lo, E nan, E* out, Tables t, std::int64_t rows,
                              std::int64_t tile_rows) {
  extern __shared__ uint4 shared_tile[];
  constexpr int V = 16 / sizeof(E);
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * tile_rows, nr = min(tile_rows, rows - r0);
  const std::int64_t low = s.channels - s.high;
  E* hi_tile = reinterpret_cast<E*>(shared_tile);
  E* lo_tile = hi_tile + (tile_rows * s.high + V - 1) / V * V;  // 16-byte aligned
  stage(hi_tile, hi + r0 * s.high, nr * s.high);
  stage(lo_tile, lo + r0 * low, nr * low);
  cuda_async::wait_all();
  __syncthreads();
  const std::int64_t vectors = nr * s.channels / V;  // channels % V == 0
  E* first = out + r0 * s.channels;
  for (std::int64_t q = threadIdx.x; q < vectors; q += blockDim.x) {
    const auto e = static_cast<std::uint32_t>(q * V), d = static_cast<std::uint32_t>(s.channels);  // tile-local: small
    const std::uint32_t row = e / d, c0 = e % d;
    const std::int32_t* slots = t.slot + mixed_channel_split::mask_of_row(r0 + row, s.masks, s.rows_per_mask) * s.channels + c0;
    E x[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const std::int32_t slot = slots[j];
      x[j] = slot >= 0 ? hi_tile[row * s.high + slot] : slot != kInvalid ? lo_tile[row * low + (-1 - slot)] : nan;
    }
    store_run<E, V>(first + e, x);
  }
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

// The tables of a split, filled on `st` from the device mask section.
// One allocation for the three tables (slot [masks x channels], then high_source, then low_source): fewer host calls
// per decode, which the live cache makes every step.
struct TableBuffers {
  DeviceBuffer all;
  std::int64_t masks, channels, high;
  Tables tables() const {
    auto* base = all.as<std::int32_t>();
    return {base, base + masks * channels, base + masks * channels + masks * high};
  }
};
TableBuffers tables_of(const Split& s, cudaStream_t st) {
  TableBuffers b{DeviceBuffer(static_cast<std::size_t>(s.masks * 2 * s.channels) * sizeof(std::int32_t), st), s.masks, s.channels, s.high};
  fill_tables<<<blocks_for(s.masks * s.channels), kThreads, 0, st>>>(s, b.tables());
  check_launch("mixed_channel (slot tables)");
  return b;
}

// Rows per tile for the tiled kernels (a multiple of 8, the tile at most kTileBytes), or 0 where they do not apply
// (rows not a 16-byte multiple, or 8 rows larger than kTileBytes): then the per-run kernels run.
constexpr std::int64_t kTileBytes = 16 * 1024;
std::int64_t tile_rows_for(const Split& s, int element_bytes, const void* full_block, const void* hi, const void* lo) {
  const std::int64_t row_bytes = s.channels * element_bytes;
  if (row_bytes % 16 != 0 || !aligned16(full_block) || !aligned16(hi) || !aligned16(lo) || 8 * row_bytes > kTileBytes)
    return 0;
  return kTileBytes / row_bytes / 8 * 8;
}

}  // namespace

void mask_from_scores(const double* scores, std::int64_t masks, std::int64_t channels, std::int64_t k,
                      std::uint8_t* section, void* stream) {
  const auto bytes = static_cast<std::int64_t>(mixed_channel_format::mask_bytes(static_cast<std::size_t>(masks),
                                                                                static_cast<std::size_t>(channels)));
  if (bytes == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  if (channels % 8 == 0 && channels <= kMaxStagedChannels) {
    const auto threads = static_cast<unsigned>(std::min<std::int64_t>(kThreads, (channels + 31) / 32 * 32));
    dependent_launch::launch_dependent<mask_bytes_per_mask>(static_cast<unsigned>(masks), threads, static_cast<std::size_t>(channels) * 9, st, scores, channels, k,
                                                                                                         section);
  } else {
    mask_bytes_from_scores<<<blocks_for(bytes), kThreads, 0, st>>>(scores, masks, channels, k, section, bytes);
  }
  check_launch("mixed_channel (mask from scores)");
}

void gather(const Split& s, const void* in, int element_bytes, void* hi, void* lo, void* stream) {
  const std::int64_t rows = s.masks * s.rows_per_mask, elements = rows * s.channels;
  if (elements == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  const TableBuffers tables = tables_of(s, st);
  const std::int64_t tile_rows = tile_rows_for(s, element_bytes, in, hi, lo);
  if (tile_rows > 0) {
    const auto run = [&](auto e) {
      using E = decltype(e);
      const auto tiles = static_cast<unsigned>((rows + tile_rows - 1) / tile_rows);
      gather_tiles<E><<<tiles, kThreads, static_cast<std::size_t>(tile_rows * s.channels) * sizeof(E), st>>>(
          s, static_cast<const E*>(in), static_cast<E*>(hi), static_cast<E*>(lo), tables.tables(), rows, tile_rows);
    };
    element_bytes == 2 ? run(std::uint16_t{}) : run(std::uint32_t{});
  } else {
    dispatch(element_bytes, s.channels, in, [&](auto e, auto v) {
      using E = decltype(e);
      constexpr int V = decltype(v)::value;
      gather_runs<E, V><<<blocks_for(elements / V), kThreads, 0, st>>>(s, static_cast<const E*>(in), static_cast<E*>(hi),
                                                                        static_cast<E*>(lo), tables.tables().slot,
                                                                        elements / V);
    });
  }
  check_launch("mixed_channel gather");
}

void scatter(const Split& s, const void* hi, const void* lo, int element_bytes, std::uint32_t nan_bits, void* out,
             void* stream) {
  const std::int64_t rows = s.masks * s.rows_per_mask, elements = rows * s.channels;
  if (elements == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  const TableBuffers tables = tables_of(s, st);
  const std::int64_t tile_rows = tile_rows_for(s, element_bytes, out, hi, lo);
  if (tile_rows > 0) {
    const auto run = [&](auto e) {
      using E = decltype(e);
      constexpr std::int64_t V = 16 / sizeof(E);
      const auto tiles = static_cast<unsigned>((rows + tile_rows - 1) / tile_rows);
      // The high part rounded up to whole 16-byte vectors, then the low part.
      const std::int64_t shared = ((tile_rows * s.high + V - 1) / V * V + tile_rows * (s.channels - s.high)) * sizeof(E);
      scatter_tiles<E><<<tiles, kThreads, static_cast<std::size_t>(shared), st>>>(
          s, static_cast<const E*>(hi), static_cast<const E*>(lo), static_cast<E>(nan_bits), static_cast<E*>(out),
          tables.tables(), rows, tile_rows);
    };
    element_bytes == 2 ? run(std::uint16_t{}) : run(std::uint32_t{});
  } else {
    dispatch(element_bytes, s.channels, out, [&](auto e, auto v) {
      using E = decltype(e);
      constexpr int V = decltype(v)::value;
      scatter_runs<E, V><<<blocks_for(elements / V), kThreads, 0, st>>>(s, static_cast<const E*>(hi), static_cast<const E*>(lo),
                                                                         static_cast<E>(nan_bits), static_cast<E*>(out),
                                                                         tables.tables().slot, elements / V);
    });
  }
  check_launch("mixed_channel scatter");
}

}  // namespace vidkv::mixed_channel_cuda
