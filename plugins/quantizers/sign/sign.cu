// sign on CUDA (sign_cuda.h): fft off bit-identical to the CPU reference (sign.cpp); the FFT through the fused
// tile kernels (sign_fft_tile.h, power-of-two n in [16, 128]) or through cuFFT with cached plans (any n).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cufft.h>

#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "vidkv/core/cuda/async_copy.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/sign/sign_cuda.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_bins.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tile.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/fragment_permute.h"

namespace vidkv::sign_cuda {

namespace {

using group_format::CodeLayout;
using group_format::GroupAxis;
using group_format::GroupGrid;
using sign_format::Reconstruction;

// Word stores / loads of the word-run kernels: plain 32-bit accesses where the codes section is 4-byte aligned, else
// byte by byte (little-endian, group_format::put_word / get_word): the same bytes either way, and still race-free,
// since each word belongs to one group (word-aligned groups are counted from the start of the section).
struct WordStore {
  std::uint8_t* bytes;
  bool aligned;
  __device__ void operator()(std::int64_t w, std::uint32_t v) const {
    if (aligned) {
      reinterpret_cast<std::uint32_t*>(bytes)[w] = v;
    } else {
      group_format::put_word(bytes, w, v);
    }
  }
};
struct WordLoad {
  const std::uint8_t* bytes;
  bool aligned;
  __device__ std::uint32_t operator()(std::int64_t w) const {
    return aligned ? reinterpret_cast<const std::uint32_t*>(bytes)[w] : group_format::get_word(bytes, w);
  }
};

using group_cuda::Sections;  // mins: layout release only (the constant 0 min), else null

Sections sections_of(std::uint8_t* out, const GroupGrid& g, const Config& c) {
  Sections s = sign_format::sections(c.layout, g, c.scale_dtype, out);
  if (c.layout != CodeLayout::release) s.mins = nullptr;  // no zero points to write
  return s;
}

// Addressing of element (h, t, c) of the block (sign_cuda.h, Channels).
struct Block {
  std::int64_t tokens, n;
  Channels map;
  __device__ std::int64_t at(std::int64_t h, std::int64_t t, std::int64_t c) const {
    const std::int64_t row = h * tokens + t;
    return map.index ? row * map.stride + map.index[c] : row * n + c;
  }
  // Element j of row r of head h of the grid over the block's channels grouped along `axis`.
  __device__ std::int64_t at_grid(GroupAxis axis, std::int64_t h, std::int64_t r, std::int64_t j) const {
    return axis == GroupAxis::channel ? at(h, j, r) : at(h, r, j);
  }
  // Element i of the block in row-major order.
  __device__ std::int64_t at_flat(std::int64_t i) const { return map.index ? (i / n) * map.stride + map.index[i % n] : i; }
};

// --- One group, shared by every encode path: sign_format::encode_group with word stores ----------------------------
template <bool kWords, class Value>
__device__ inline void put_group(const Sections& s, std::int64_t gidx, DType sd, std::int64_t first_word, std::int64_t j0,
                                 std::int64_t n, Value value) {
  sign_format::encode_group<kWords>(WordStore{s.codes, group_cuda::aligned4(s.codes)}, s.scales, s.mins, gidx, sd, first_word,
                                    j0, n, value);
}

// --- fft off ------------------------------------------------------------------------------------------------------

template <DType T, bool kWordRuns>
__global__ void encode_groups(const void* in, Block b, GroupGrid g, GroupAxis axis, DType sd, CodeLayout layout, Sections s) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.group_count()) return;
  const auto c = group_cuda::group_of_thread(g, axis, t);
  const std::int64_t j0 = c.gi * g.group, n = g.group_size(c.gi);
  auto value = [&](std::int64_t j) { return group_cuda::load<T>(in, b.at_grid(axis, c.h, c.r, j)); };
  put_group<kWordRuns>(s, g.group_index(c.h, c.r, c.gi), sd, group_format::code_word(layout, g, 1, c.h, c.r, j0), j0, n, value);
}

// One byte of the codes section per thread (any alignment, tails): the bits depend on the values only.
template <DType T>
__global__ void encode_code_bytes(const void* in, Block blk, GroupGrid g, GroupAxis axis, CodeLayout layout, std::uint8_t* codes,
                                  std::int64_t code_bytes) {
  const std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= code_bytes) return;
  codes[b] = group_format::code_byte(layout, g, 1, b, [&](std::int64_t h, std::int64_t r, std::int64_t j) {
    return sign_format::encode_value(group_cuda::load<T>(in, blk.at_grid(axis, h, r, j)));
  });
}

template <DType O, bool kWordRuns>
__global__ void decode_groups(const std::uint8_t* codes, const std::uint8_t* scales, Block b, GroupGrid g, GroupAxis axis, DType sd,
                              CodeLayout layout, Reconstruction rec, void* out) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.group_count()) return;
  const auto c = group_cuda::group_of_thread(g, axis, t);
  const std::int64_t j0 = c.gi * g.group, n = g.group_size(c.gi);
  const float s = group_format::get_scalar(scales, g.group_index(c.h, c.r, c.gi), sd);
  if constexpr (kWordRuns) {
    group_format::WordRunReader<WordLoad> rd(WordLoad{codes, group_cuda::aligned4(codes)},
                                             group_format::code_word(layout, g, 1, c.h, c.r, j0), 1);
    for (std::int64_t j = j0; j < j0 + n; ++j)
      store_from_float(out, O, static_cast<std::size_t>(b.at_grid(axis, c.h, c.r, j)), sign_format::decode_value(rd.next(), s, rec));
  } else {
    for (std::int64_t j = j0; j < j0 + n; ++j)
      store_from_float(out, O, static_cast<std::size_t>(b.at_grid(axis, c.h, c.r, j)),
                       sign_format::decode_value(group_format::get_code(layout, codes, g, 1, c.h, c.r, j), s, rec));
  }
}

// --- fft through cuFFT ------------------------------------------------------------------------------------------

enum class PlanType : std::uint8_t { r2c, c2r };

// A transform of length 1 is the identity (X0 = x0, and C2R returns Re H0): done here, not by cuFFT.
__global__ void length_one(PlanType type, std::int64_t rows, const void* in, void* out) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    if (type == PlanType::r2c) {
      static_cast<float2*>(out)[i] = make_float2(static_cast<const float*>(in)[i], 0.0f);
    } else {
      static_cast<float*>(out)[i] = static_cast<const float2*>(in)[i].x;
    }
  }
}

// The FFT grid: [heads, tokens, components] grouped along `axis`; (token row, component) of grid element (h, r, j).
struct Spectrum {
  const float* half;  // R2C output, (n / 2 + 1) interleaved complex per token row
  SignFft kind;
  std::int64_t n, tokens;
  GroupAxis axis;
  __device__ float operator()(std::int64_t h, std::int64_t r, std::int64_t j) const {
    const std::int64_t t = axis == GroupAxis::channel ? j : r, c = axis == GroupAxis::channel ? r : j;
    return sign_fft_bins::component(kind, n, half + (h * tokens + t) * 2 * sign_fft_bins::half_bins(n), c);
  }
};

unsigned grid_stride_blocks(std::int64_t count) {
  const std::int64_t b = (count + group_cuda::kThreads - 1) / group_cuda::kThreads;
  return static_cast<unsigned>(b < 65536 ? b : 65536);
}

// The cuFFT input: the block as contiguous fp32 [rows, n] (gathered where the block is a channel subset).
template <DType T>
__global__ void to_fp32(const void* in, Block b, std::int64_t count, float* out) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = group_cuda::load<T>(in, b.at_flat(i));
}

// The C2R output into the block (converted, scattered).
template <DType O>
__global__ void from_fp32(const float* in, Block b, std::int64_t count, void* out) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    store_from_float(out, O, static_cast<std::size_t>(b.at_flat(i)), in[i]);
}

template <bool kWordRuns>
__global__ void encode_spectrum_groups(Spectrum x, GroupGrid g, DType sd, CodeLayout layout, Sections s) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.group_count()) return;
  const auto c = group_cuda::group_of_thread(g, x.axis, t);
  const std::int64_t j0 = c.gi * g.group, n = g.group_size(c.gi);
  auto value = [&](std::int64_t j) { return x(c.h, c.r, j); };
  put_group<kWordRuns>(s, g.group_index(c.h, c.r, c.gi), sd, group_format::code_word(layout, g, 1, c.h, c.r, j0), j0, n, value);
}

__global__ void encode_spectrum_code_bytes(Spectrum x, GroupGrid g, CodeLayout layout, std::uint8_t* codes, std::int64_t code_bytes) {
  const std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= code_bytes) return;
  codes[b] = group_format::code_byte(layout, g, 1, b, [&](std::int64_t h, std::int64_t r, std::int64_t j) {
    return sign_format::encode_value(x(h, r, j));
  });
}

// The C2R input: bin k of token row `row` (one thread each) from the decoded components, times 1/n.
__global__ void decode_half_spectrum(const std::uint8_t* codes, const std::uint8_t* scales, GroupGrid g, Config c,
                                     std::int64_t n, std::int64_t tokens, std::int64_t rows, float2* half) {
  const std::int64_t bins = sign_fft_bins::half_bins(n);
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * bins) return;
  const std::int64_t row = i / bins, k = i % bins, h = row / tokens, t = row % tokens;
  auto y = [&](std::int64_t comp) {
    const std::int64_t r = c.axis == GroupAxis::channel ? comp : t, j = c.axis == GroupAxis::channel ? t : comp;
    const float s = group_format::get_scalar(scales, g.group_index(h, r, j / g.group), c.scale_dtype);
    return sign_format::decode_value(group_format::get_code(c.layout, codes, g, 1, h, r, j), s, c.reconstruction);
  };
  const sign_fft_bins::Bin b = sign_fft_bins::inverse_bin(c.fft, n, k, 1.0f / static_cast<float>(n), y);
  half[i] = make_float2(b.re, b.im);
}

void check_cufft(cufftResult r, const char* what) {
  if (r != CUFFT_SUCCESS) VIDKV_THROW(CudaError, "sign cuFFT: ", what, " failed with cufftResult ", static_cast<int>(r));
}

struct CachedPlan {
  cufftHandle handle = 0;
  std::size_t work_bytes = 0;
};

// The process-wide plan cache (sign_cuda.h): created under the mutex, never destroyed (plans must not outlive the
// CUDA context, whose teardown order at exit is unspecified), executed under the same mutex.
std::mutex& plan_mutex() {
  static std::mutex m;
  return m;
}

CachedPlan plan_locked(int device, std::int64_t n, PlanType type, std::int64_t batch) {
  static auto* plans = new std::map<std::tuple<int, std::int64_t, PlanType, std::int64_t>, CachedPlan>();
  const auto key = std::make_tuple(device, n, type, batch);
  auto it = plans->find(key);
  if (it != plans->end()) return it->second;
  CachedPlan p;
  check_cufft(cufftCreate(&p.handle), "cufftCreate");
  check_cufft(cufftSetAutoAllocation(p.handle, 0), "cufftSetAutoAllocation");
  long long size = n;
  const cufftResult made = cufftMakePlanMany64(p.handle, 1, &size, nullptr, 1, 0, nullptr, 1, 0,
                                               type == PlanType::r2c ? CUFFT_R2C : CUFFT_C2R, batch, &p.work_bytes);
  if (made != CUFFT_SUCCESS) cufftDestroy(p.handle);
  check_cufft(made, "cufftMakePlanMany64");
  plans->emplace(key, p);
  return p;
}

// Runs the R2C (in: rows * n reals, out: rows * (n/2 + 1) complex) or C2R (the reverse, unnormalised) transform of
// `rows` token rows on `stream`, in power-of-two batches (sign_cuda.h).
void run_fft(PlanType type, std::int64_t n, std::int64_t rows, void* in, void* out, void* stream) {
  if (n == 1) {
    length_one<<<grid_stride_blocks(rows), group_cuda::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(type, rows, in, out);
    return check_launch("sign FFT (length 1)");
  }
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) VIDKV_THROW(CudaError, "sign cuFFT: cudaGetDevice failed");
  const std::int64_t real_dist = n, complex_dist = sign_fft_bins::half_bins(n);
  for (std::int64_t done = 0; done < rows;) {
    std::int64_t batch = 1;
    while (2 * batch <= rows - done) batch *= 2;
    CachedPlan p;
    {
      std::lock_guard<std::mutex> lock(plan_mutex());
      p = plan_locked(device, n, type, batch);
    }
    DeviceBuffer work(p.work_bytes, stream);  // freed stream-ordered after the transform
    {
      std::lock_guard<std::mutex> lock(plan_mutex());
      check_cufft(cufftSetStream(p.handle, static_cast<cudaStream_t>(stream)), "cufftSetStream");
      if (p.work_bytes > 0) check_cufft(cufftSetWorkArea(p.handle, work.data()), "cufftSetWorkArea");
      if (type == PlanType::r2c) {
        check_cufft(cufftExecR2C(p.handle, static_cast<cufftReal*>(in) + done * real_dist,
                                 static_cast<cufftComplex*>(out) + done * complex_dist),
                    "cufftExecR2C");
      } else {
        check_cufft(cufftExecC2R(p.handle, static_cast<cufftComplex*>(in) + done * complex_dist,
                                 static_cast<cufftReal*>(out) + done * real_dist),
                    "cufftExecC2R");
      }
    }
    done += batch;
  }
}

// --- fft, fused tile kernels --------------------------------------------------------------------------------------

constexpr int kTileThreadsMax = 128;

// Vector transfers of the tile kernels: 16 bytes (8 fp16 / bf16 or 4 fp32 values) per load or store. The hardware
// conversions give the bits of dtype.h's (load_as_float, store_from_float: exact widening, round to nearest even
// with overflow to inf) for every non-NaN value.
__device__ inline float widen(DType t, std::uint32_t bits16) {
  return t == DType::f16 ? __half2float(__ushort_as_half(static_cast<unsigned short>(bits16))) : __uint_as_float(bits16 << 16);
}
__device__ inline std::uint32_t narrow(DType t, float v) {
  return t == DType::f16 ? __half_as_ushort(__float2half_rn(v)) : __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// tile[r * S + c] = element (r * n + c) of the `count` values at `in` + base (count a multiple of 8; `vec`: the
// address of element `base` is 16-byte aligned). The vector paths load kBatch vectors per thread before converting
// any (predicated loads, no branch between them): a loop that converts each vector as it arrives waits one
// device-memory round trip per vector (the compiler does not hoist loads over the loop's exit tests).
constexpr int kBatch = 8;
template <int n, int S>
__device__ inline void load_tile(const void* __restrict__ in, DType t, bool vec, const Block& b, std::int64_t base, int count,
                                 float* tile) {
  if (vec) {
    const int per = t == DType::f32 ? 4 : 8, vectors = count / per;  // values per vector
    const auto* p = reinterpret_cast<const uint4*>(static_cast<const std::uint8_t*>(in) + base * dtype_size(t));
    for (int v0 = threadIdx.x; v0 < vectors; v0 += kBatch * blockDim.x) {
      uint4 x[kBatch];
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int v = v0 + k * static_cast<int>(blockDim.x);
        x[k] = v < vectors ? __ldg(p + v) : make_uint4(0u, 0u, 0u, 0u);
      }
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int v = v0 + k * static_cast<int>(blockDim.x);
        if (v >= vectors) break;
        float* d = tile + (per * v / n) * S + (per * v) % n;
        const std::uint32_t w[4] = {x[k].x, x[k].y, x[k].z, x[k].w};
        if (t == DType::f32) {
#pragma unroll
          for (int i = 0; i < 4; ++i) d[i] = __uint_as_float(w[i]);
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i) d[2 * i] = widen(t, w[i] & 0xffffu), d[2 * i + 1] = widen(t, w[i] >> 16);
        }
      }
    }
  } else {
    for (int i = threadIdx.x; i < count; i += blockDim.x)
      tile[(i / n) * S + i % n] = load_as_float(in, t, static_cast<std::size_t>(b.at_flat(base + i)));
  }
}

// A gathered tile (Block with an index) through `stage`: the tile's `valid` full input rows (row0 = h * tokens + t0,
// b.map.stride values each, 16-byte aligned) are copied raw into shared memory with 16-byte loads, then channel
// index[c] of each row is widened into tile[r * S + c].
template <int n, int S>
__device__ inline void load_tile_staged(const void* __restrict__ in, DType t, const Block& b, std::int64_t row0, int valid,
                                        float* tile, uint4* stage) {
  const std::int64_t row_bytes = b.map.stride * dtype_size(t);
  const auto* src = reinterpret_cast<const uint4*>(static_cast<const std::uint8_t*>(in) + row0 * row_bytes);
  const int vectors = static_cast<int>(valid * row_bytes / 16);
  cuda_async::stage16(stage, src, vectors);  // all of a thread's copies in flight at once (async_copy.cuh)
  __syncthreads();
  for (int i = threadIdx.x; i < valid * n; i += blockDim.x) {
    const int r = i / n, c = i % n;
    tile[r * S + c] = load_as_float(stage, t, static_cast<std::size_t>(r * b.map.stride + __ldg(b.map.index + c)));
  }
}

// The inverse: element (r * n + c) of `out` + base = tile[r * S + c] in dtype t.
template <int n, int S>
__device__ inline void store_tile(const float* tile, void* __restrict__ out, DType t, bool vec, const Block& b, std::int64_t base,
                                  int count) {
  if (vec && t == DType::f32) {
    auto* p = reinterpret_cast<float4*>(static_cast<float*>(out) + base);
#pragma unroll 4
    for (int v = threadIdx.x; v < count / 4; v += blockDim.x) {
      const float* s = tile + (4 * v / n) * S + (4 * v) % n;
      p[v] = make_float4(s[0], s[1], s[2], s[3]);
    }
  } else if (vec) {
    auto* p = reinterpret_cast<uint4*>(static_cast<std::uint16_t*>(out) + base);
#pragma unroll 4
    for (int v = threadIdx.x; v < count / 8; v += blockDim.x) {
      const float* s = tile + (8 * v / n) * S + (8 * v) % n;
      std::uint32_t w[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) w[k] = narrow(t, s[2 * k]) | (narrow(t, s[2 * k + 1]) << 16);
      p[v] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  } else {
    for (int i = threadIdx.x; i < count; i += blockDim.x)
      store_from_float(out, t, static_cast<std::size_t>(b.at_flat(base + i)), tile[(i / n) * S + i % n]);
  }
}

// One CTA: head blockIdx.y, tokens [t0, t0 + tile_tokens). Shared memory: tile_tokens rows of W + 1 floats (the odd
// stride makes a warp's one-row-per-thread accesses hit 32 different banks).
template <int N, bool Complex>
__global__ void __launch_bounds__(kTileThreadsMax) encode_tile(const void* in, DType in_dtype, bool vec, bool staged, Block b,
                                                               std::int64_t tokens, GroupGrid g, GroupAxis axis, DType sd,
                                                               CodeLayout layout, Sections s, int tile_tokens,
                                                               sign_fft_tile::Twiddles tw) {
  constexpr int n = 2 * N, W = Complex ? 2 * n : n, S = W + 1;
  extern __shared__ float tile[];
  const std::int64_t h = blockIdx.y, t0 = static_cast<std::int64_t>(blockIdx.x) * tile_tokens;
  const int valid = static_cast<int>(tokens - t0 < tile_tokens ? tokens - t0 : tile_tokens);
  const std::int64_t base = (h * tokens + t0) * n;
  if (staged) {  // the staging area follows the tile (tile_tokens * S floats, a multiple of 16 bytes)
    load_tile_staged<n, S>(in, in_dtype, b, h * tokens + t0, valid, tile, reinterpret_cast<uint4*>(tile + tile_tokens * S));
  } else {
    load_tile<n, S>(in, in_dtype, vec, b, base, valid * n, tile);
  }
  __syncthreads();
  for (int t = threadIdx.x; t < valid; t += blockDim.x) {
    float* row = tile + t * S;
    sign_fft_tile::forward_row<N, Complex>([&](int c) { return row[c]; }, [&](int c, float v) { row[c] = v; }, tw);
  }
  __syncthreads();
  const WordStore store{s.codes, group_cuda::aligned4(s.codes)};
  if (axis == GroupAxis::channel) {
    const int groups = (valid + static_cast<int>(g.group) - 1) / static_cast<int>(g.group);
    for (int task = threadIdx.x; task < W * groups; task += blockDim.x) {
      const int c = task % W, jl = (task / W) * static_cast<int>(g.group);
      const std::int64_t j0 = t0 + jl, len = g.group_size(j0 / g.group);
      auto value = [&](std::int64_t j) { return tile[(j - t0) * S + c]; };
      sign_format::encode_group<true>(store, s.scales, s.mins, g.group_index(h, c, j0 / g.group), sd,
                                      group_format::code_word(layout, g, 1, h, c, j0), j0, len, value);
    }
  } else {
    const int gpr = static_cast<int>(g.groups_per_row());
    for (int task = threadIdx.x; task < valid * gpr; task += blockDim.x) {
      const int t = task / gpr, gi = task % gpr;
      const std::int64_t j0 = static_cast<std::int64_t>(gi) * g.group, len = g.group_size(gi);
      auto value = [&](std::int64_t j) { return tile[t * S + j]; };
      sign_format::encode_group<true>(store, s.scales, s.mins, g.group_index(h, t0 + t, gi), sd,
                                      group_format::code_word(layout, g, 1, h, t0 + t, j0), j0, len, value);
    }
  }
}

template <int N, bool Complex>
__global__ void __launch_bounds__(kTileThreadsMax) decode_tile(const std::uint8_t* codes, const std::uint8_t* scales, std::int64_t tokens,
                                                               GroupGrid g, GroupAxis axis, DType sd, CodeLayout layout,
                                                               Reconstruction rec, void* out, DType out_dtype, bool vec, Block b,
                                                               int tile_tokens,
                                                               sign_fft_tile::Twiddles tw) {
  constexpr int n = 2 * N, W = Complex ? 2 * n : n, S = W + 1;
  extern __shared__ float tile[];
  const std::int64_t h = blockIdx.y, t0 = static_cast<std::int64_t>(blockIdx.x) * tile_tokens;
  const int valid = static_cast<int>(tokens - t0 < tile_tokens ? tokens - t0 : tile_tokens);
  const WordLoad words{codes, group_cuda::aligned4(codes)};
  if (axis == GroupAxis::channel) {
    const int groups = (valid + static_cast<int>(g.group) - 1) / static_cast<int>(g.group);
    for (int task = threadIdx.x; task < W * groups; task += blockDim.x) {
      const int c = task % W, jl = (task / W) * static_cast<int>(g.group);
      const std::int64_t j0 = t0 + jl, len = g.group_size(j0 / g.group);
      const float sc = group_format::get_scalar(scales, g.group_index(h, c, j0 / g.group), sd);
      group_format::WordRunReader<WordLoad> rd(words, group_format::code_word(layout, g, 1, h, c, j0), 1);
      for (std::int64_t j = 0; j < len; ++j) tile[(jl + j) * S + c] = sign_format::decode_value(rd.next(), sc, rec);
    }
  } else {
    const int gpr = static_cast<int>(g.groups_per_row());
    for (int task = threadIdx.x; task < valid * gpr; task += blockDim.x) {
      const int t = task / gpr, gi = task % gpr;
      const std::int64_t j0 = static_cast<std::int64_t>(gi) * g.group, len = g.group_size(gi);
      const float sc = group_format::get_scalar(scales, g.group_index(h, t0 + t, gi), sd);
      group_format::WordRunReader<WordLoad> rd(words, group_format::code_word(layout, g, 1, h, t0 + t, j0), 1);
      for (std::int64_t j = j0; j < j0 + len; ++j) tile[t * S + j] = sign_format::decode_value(rd.next(), sc, rec);
    }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < valid; t += blockDim.x) {
    float* row = tile + t * S;
    sign_fft_tile::inverse_row<N, Complex>([&](int c) { return row[c]; }, [&](int j, float v) { row[j] = v; }, tw);
  }
  __syncthreads();
  store_tile<n, S>(tile, out, out_dtype, vec, b, (h * tokens + t0) * n, valid * n);
}

// 16-byte vector transfers of a tile: every tile starts at a multiple of n >= 16 elements, so the buffer's own
// alignment decides.
bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// Calls f(std::integral_constant<int, N>, std::bool_constant<Complex>) for n = 2N in {16, 32, 64, 128}.
template <class F>
void dispatch_tile(SignFft kind, std::int64_t n, F&& f) {
  if (!sign_fft_tile::dispatch_width(n, kind == SignFft::complex, std::forward<F>(f)))
    VIDKV_THROW(CudaError, "sign: the fused FFT kernels do not handle n = ", n);
}

GroupGrid values_grid(const Config& c, const BlockShape& shape) {
  return group_format::grid_of(c, shape, fft_components(c.fft, shape.channels));  // n when fft off
}

// Layout fragment's sections (fragment_permute.h): the codes, then the scales (1 bit, the form by the axis).
fragment_permute::BlockSections fragment_sections(const Config& c, const GroupGrid& g) {
  return {g, group_format::fragment_form(g, sign_format::kBits), static_cast<int>(dtype_size(c.scale_dtype)), 1};
}

void encode_tile_launch(const Config& c, const void* in, DType in_dtype, const Block& b, const BlockShape& shape, std::uint8_t* out,
                        cudaStream_t st) {
  const GroupGrid g = values_grid(c, shape);
  const Sections s = sections_of(out, g, c);
  // A gathered block stages its tiles' full input rows where they are 16-byte aligned and a tile still fits.
  const std::int64_t row_bytes = b.map.stride * dtype_size(in_dtype);
  const bool stageable = b.map.index != nullptr && aligned16(in) && row_bytes % 16 == 0;
  const std::int64_t staged_tokens = stageable ? fused_tile_tokens(c, shape.channels, row_bytes) : 0;
  const bool staged = staged_tokens > 0;
  const int tile_tokens = static_cast<int>(staged ? staged_tokens : fused_tile_tokens(c, shape.channels));
  const dim3 blocks(static_cast<unsigned>((shape.tokens + tile_tokens - 1) / tile_tokens), static_cast<unsigned>(shape.heads));
  const int threads = ((tile_tokens + 31) / 32) * 32;
  const bool vec = b.map.index == nullptr && aligned16(in);
  dispatch_tile(c.fft, shape.channels, [&](auto half, auto complex) {
    constexpr int N = decltype(half)::value;
    constexpr bool Complex = decltype(complex)::value;
    constexpr int W = Complex ? 4 * N : 2 * N;
    const std::size_t bytes = static_cast<std::size_t>(tile_tokens) * ((W + 1) * sizeof(float) + (staged ? row_bytes : 0));
    encode_tile<N, Complex><<<blocks, threads, bytes, st>>>(in, in_dtype, vec, staged, b, shape.tokens, g, c.axis, c.scale_dtype,
                                                            c.layout, s, tile_tokens, sign_fft_tile::twiddles());
  });
  check_launch("sign encode (fused FFT tile)");
}

void decode_tile_launch(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, const Block& b,
                        cudaStream_t st) {
  const GroupGrid g = values_grid(c, shape);
  const std::uint8_t* scales = in + sign_format::codes_bytes(c.layout, g);
  const int tile_tokens = static_cast<int>(fused_tile_tokens(c, shape.channels));
  const dim3 blocks(static_cast<unsigned>((shape.tokens + tile_tokens - 1) / tile_tokens), static_cast<unsigned>(shape.heads));
  const int threads = ((tile_tokens + 31) / 32) * 32;
  const bool vec = b.map.index == nullptr && aligned16(out);
  dispatch_tile(c.fft, shape.channels, [&](auto half, auto complex) {
    constexpr int N = decltype(half)::value;
    constexpr bool Complex = decltype(complex)::value;
    constexpr int W = Complex ? 4 * N : 2 * N;
    const std::size_t bytes = static_cast<std::size_t>(tile_tokens) * (W + 1) * sizeof(float);
    decode_tile<N, Complex><<<blocks, threads, bytes, st>>>(in, scales, shape.tokens, g, c.axis, c.scale_dtype, c.layout,
                                                            c.reconstruction, out, out_dtype, vec, b, tile_tokens, sign_fft_tile::twiddles());
  });
  check_launch("sign decode (fused FFT tile)");
}

void encode_cufft(const Config& c, const void* in, DType in_dtype, const Block& b, const BlockShape& shape, std::uint8_t* out,
                  cudaStream_t st) {
  const GroupGrid g = values_grid(c, shape);
  const std::int64_t n = shape.channels, rows = shape.heads * shape.tokens;
  const Sections s = sections_of(out, g, c);
  DeviceBuffer real(static_cast<std::size_t>(rows * n) * sizeof(float), st);
  DeviceBuffer half(static_cast<std::size_t>(rows * sign_fft_bins::half_bins(n)) * 2 * sizeof(float), st);
  group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    to_fp32<T><<<grid_stride_blocks(rows * n), group_cuda::kThreads, 0, st>>>(in, b, rows * n, real.as<float>());
  });
  check_launch("sign encode (to fp32)");
  run_fft(PlanType::r2c, n, rows, real.data(), half.data(), st);
  const Spectrum x{half.as<const float>(), c.fft, n, shape.tokens, c.axis};
  const bool word_runs = group_format::word_aligned_groups(c.layout, g, 1);
  if (word_runs) {
    encode_spectrum_groups<true><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(x, g, c.scale_dtype,
                                                                                                        c.layout, s);
  } else {
    encode_spectrum_groups<false><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(x, g, c.scale_dtype,
                                                                                                         c.layout, s);
    check_launch("sign encode (FFT statistics)");
    const auto code_bytes = static_cast<std::int64_t>(sign_format::codes_bytes(c.layout, g));
    encode_spectrum_code_bytes<<<group_cuda::blocks_for(code_bytes), group_cuda::kThreads, 0, st>>>(x, g, c.layout, s.codes,
                                                                                                  code_bytes);
  }
  check_launch("sign encode (FFT groups)");
}

void decode_cufft(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, const Block& b,
                  cudaStream_t st) {
  const GroupGrid g = values_grid(c, shape);
  const std::int64_t n = shape.channels, rows = shape.heads * shape.tokens, bins = sign_fft_bins::half_bins(n);
  const std::uint8_t* scales = in + sign_format::codes_bytes(c.layout, g);
  DeviceBuffer half(static_cast<std::size_t>(rows * bins) * 2 * sizeof(float), st);
  decode_half_spectrum<<<group_cuda::blocks_for(rows * bins), group_cuda::kThreads, 0, st>>>(in, scales, g, c, n, shape.tokens,
                                                                                             rows, half.as<float2>());
  check_launch("sign decode (half spectrum)");
  // fp32 into a contiguous block: C2R writes the output itself; otherwise an fp32 scratch and one converting pass.
  if (out_dtype == DType::f32 && b.map.index == nullptr) return run_fft(PlanType::c2r, n, rows, half.data(), out, st);
  DeviceBuffer real(static_cast<std::size_t>(rows * n) * sizeof(float), st);
  run_fft(PlanType::c2r, n, rows, half.data(), real.data(), st);
  group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
    constexpr DType O = decltype(tag)::value;
    from_fp32<O><<<grid_stride_blocks(rows * n), group_cuda::kThreads, 0, st>>>(real.as<const float>(), b, rows * n, out);
  });
  check_launch("sign decode (from fp32)");
}

}  // namespace

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream,
            Channels gather) {
  const GroupGrid g = values_grid(c, shape);
  if (g.group_count() == 0) return;
  if (c.layout == CodeLayout::fragment) {  // coded in layout dense (any path below), then permuted
    encode(dense_config(c), in, in_dtype, shape, out, stream, gather);
    fragment_permute_cuda::dense_to_fragment(fragment_sections(c, g), out, stream, "sign encode (fragment permutation)");
    return;
  }
  auto* st = static_cast<cudaStream_t>(stream);
  const Block b{shape.tokens, shape.channels, gather};
  const Path p = path(c, shape);
  if (p == Path::fft_tile) return encode_tile_launch(c, in, in_dtype, b, shape, out, st);
  if (p == Path::cufft) return encode_cufft(c, in, in_dtype, b, shape, out, st);
  const Sections s = sections_of(out, g, c);
  const bool word_runs = group_format::word_aligned_groups(c.layout, g, 1);
  group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    group_cuda::dispatch_bool(word_runs, [&](auto runs) {
      encode_groups<T, decltype(runs)::value><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, b, g, c.axis, c.scale_dtype, c.layout, s);
    });
    if (!word_runs) {
      check_launch("sign encode (statistics)");
      const auto code_bytes = static_cast<std::int64_t>(sign_format::codes_bytes(c.layout, g));
      encode_code_bytes<T><<<group_cuda::blocks_for(code_bytes), group_cuda::kThreads, 0, st>>>(in, b, g, c.axis, c.layout, s.codes,
                                                                                              code_bytes);
    }
  });
  check_launch("sign encode");
}

void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream,
            Channels scatter) {
  const GroupGrid g = values_grid(c, shape);
  if (g.group_count() == 0) return;
  if (c.layout == CodeLayout::fragment) {  // permuted into a copy in layout dense, decoded there
    if (group_format::fragment_all_tail(g)) return decode(dense_config(c), in, shape, out, out_dtype, stream, scatter);
    const std::size_t total = sign_format::total_bytes(CodeLayout::dense, g, c.scale_dtype);
    DeviceBuffer dense(total, stream);
    fragment_permute_cuda::fragment_to_dense(fragment_sections(c, g), in, dense.as<std::uint8_t>(), total, stream,
                                             "sign decode (fragment permutation)");
    decode(dense_config(c), dense.as<std::uint8_t>(), shape, out, out_dtype, stream, scatter);
    return;
  }
  auto* st = static_cast<cudaStream_t>(stream);
  const Block b{shape.tokens, shape.channels, scatter};
  const Path p = path(c, shape);
  if (p == Path::fft_tile) return decode_tile_launch(c, in, shape, out, out_dtype, b, st);
  if (p == Path::cufft) return decode_cufft(c, in, shape, out, out_dtype, b, st);
  const std::uint8_t* scales = in + sign_format::codes_bytes(c.layout, g);
  const bool word_runs = group_format::word_aligned_groups(c.layout, g, 1);
  group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
    constexpr DType O = decltype(tag)::value;
    group_cuda::dispatch_bool(word_runs, [&](auto runs) {
      decode_groups<O, decltype(runs)::value><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, scales, b, g, c.axis, c.scale_dtype, c.layout, c.reconstruction, out);
    });
  });
  check_launch("sign decode");
}

}  // namespace vidkv::sign_cuda
