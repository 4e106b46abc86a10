// mixed_channel on CUDA, fused (mixed_channel_fused.h): the split "uniform high / sign FFT low" in one kernel per
// direction, one CTA per tile of 64 tokens of one head.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <type_traits>
#include <utility>

#include "vidkv/core/cuda/async_copy.cuh"
#include "vidkv/core/cuda/dependent_launch.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/cuda/kernel_occupancy.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_fused.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_split.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tile.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_group_coder.cuh"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/cuda/group_cuda_io.cuh"

namespace vidkv::mixed_channel_fused {

namespace {

using group_format::CodeLayout;
using group_format::GroupGrid;
using mixed_channel_split::kInvalidSlot;

// Tokens per CTA (mixed_channel_fused.h's kTileTokens) and threads: the FFT phase transforms one token per thread on
// the first kTile threads while the other kTile code (encode) or decode (decode) the uniform groups, so that the two
// children's work overlaps inside the CTA. 64 tokens keep a CTA's shared memory near 33 KB: 6 decode CTAs per
// multiprocessor (4 encode CTAs: 128 registers per thread). A first version with 128 tokens and every thread in the
// FFT phase held 3 CTAs of 67 KB per multiprocessor (16% of the warp slots) and encoded no faster on the H200
// (69 us per 32k-token layer of vidkv-k1.5-v1.58 keys either way).
constexpr int kTile = static_cast<int>(kTileTokens);
constexpr int kThreads = 2 * kTile;

std::atomic<std::int64_t> fused_launches{0};

// What a kernel needs of the split, the part and the children (passed by value).
struct Args {
  const std::uint8_t* mask;
  std::int64_t masks, rows_per_mask, first_row;  // the split's masks; the part's first row of the layer
  int channels, high;                            // D, k
  std::int64_t tokens;                           // per head of the part's block
  GroupGrid high_grid, low_grid;                 // the children's grids ([heads, tokens, k] and the FFT components)
  group_cuda::Sections high_sections, low_sections;  // low mins: the release's zero points, else null
  DType high_sd, low_sd;
  CodeLayout high_layout, low_layout;
  sign_format::Reconstruction reconstruction;
};

// The mask of the tile's rows (one: a mask covers the whole layer or one head, and a tile does not cross heads). The
// kernels build its tables in shared memory from the mask bytes (table_entry: mask_rank over D / 8 bytes per
// channel, L1-resident after the first CTA), instead of the unfused path's table kernel.
__device__ inline std::int64_t tile_mask(const Args& a, std::int64_t h, std::int64_t t0) {
  return mixed_channel_split::mask_of_row(a.first_row + h * a.tokens + t0, a.masks, a.rows_per_mask);
}

template <DType T>
__device__ inline float widen(std::uint16_t bits) {
  return T == DType::f16 ? __half2float(__ushort_as_half(bits)) : __uint_as_float(static_cast<std::uint32_t>(bits) << 16);
}

template <DType T, unsigned BITS, int N, bool Complex>
__global__ void __launch_bounds__(kThreads) encode_split_tile(const void* __restrict__ in, Args a, sign_fft_tile::Twiddles tw) {
  constexpr int n = 2 * N, W = Complex ? 2 * n : n, S = W + 1;
  extern __shared__ uint4 shared4[];
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  const int D = a.channels, k = a.high;
  auto* raw = reinterpret_cast<std::uint16_t*>(shared4);
  float* lo = reinterpret_cast<float*>(raw + kTile * D);  // kTile * D * 2 bytes: a multiple of 16 (D % 8 == 0)
  auto* high_source = reinterpret_cast<std::int32_t*>(lo + kTile * S);
  std::int32_t* low_source = high_source + k;
  const std::int64_t h = blockIdx.y, t0 = static_cast<std::int64_t>(blockIdx.x) * kTile;
  const int valid = static_cast<int>(a.tokens - t0 < kTile ? a.tokens - t0 : kTile);
  const auto* src = reinterpret_cast<const uint4*>(static_cast<const std::uint16_t*>(in) + (h * a.tokens + t0) * D);
  cuda_async::issue16(shared4, src, valid * D / 8);
  const std::int64_t m = tile_mask(a, h, t0);
  for (int c = threadIdx.x; c < D; c += blockDim.x) {  // the gather's rule: an invalid mask moves by fallback_slot
    const std::int32_t s = mixed_channel_split::table_entry(a.mask, D, k, m, c).moved;
    if (s >= 0) high_source[s] = c;
    else low_source[-1 - s] = c;
  }
  cuda_async::wait_all();
  __syncthreads();
  for (int i = threadIdx.x; i < valid * n; i += blockDim.x) {
    const int r = i / n, c = i - r * n;
    lo[r * S + c] = widen<T>(raw[r * D + low_source[c]]);
  }
  __syncthreads();
  const int row_groups = valid / 32, pair_tasks = (k / 2) * row_groups;
  if (threadIdx.x < kTile) {  // the FFT warps: one token each
    if (threadIdx.x < valid) {
      float* row = lo + threadIdx.x * S;
      sign_fft_tile::forward_row<N, Complex>([&](int c) { return row[c]; }, [&](int c, float v) { row[c] = v; }, tw);
    }
  } else {  // meanwhile the uniform groups: channel pair p, row group q of 32 tokens (q varying fastest, so that
            // neighbouring threads write a channel's consecutive groups)
    for (int t = threadIdx.x - kTile; t < pair_tasks; t += kThreads - kTile) {
      const int q = t % row_groups, p = t / row_groups;
      const int c0 = high_source[2 * p], c1 = high_source[2 * p + 1];
      std::uint32_t pair[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const std::uint16_t* row = raw + (q * 32 + i) * D;
        pair[i] = static_cast<std::uint32_t>(row[c0]) | (static_cast<std::uint32_t>(row[c1]) << 16);
      }
      const auto x = [&](int i) { return group_cuda::raw2_to_float2<T>(pair[i]).x; };
      const auto y = [&](int i) { return group_cuda::raw2_to_float2<T>(pair[i]).y; };
      float2 mn, mx;
      uniform_cuda::coder::pair_min_max<T>(pair, mn, mx);
      const std::int64_t gi = t0 / 32 + q;
      uniform_cuda::coder::store_group_codes<BITS>(uniform_cuda::coder::group_codes_in_range<BITS>(x, mn.x, mx.x, a.high_sd),
                                                   a.high_sd, a.high_grid.group_index(h, 2 * p, gi), a.high_sections);
      uniform_cuda::coder::store_group_codes<BITS>(uniform_cuda::coder::group_codes_in_range<BITS>(y, mn.y, mx.y, a.high_sd),
                                                   a.high_sd, a.high_grid.group_index(h, 2 * p + 1, gi), a.high_sections);
    }
  }
  __syncthreads();
  // The sign groups of the transformed tile: component c, groups of G tokens.
  const int g_low = static_cast<int>(a.low_grid.group);
  const int sign_tasks = W * ((valid + g_low - 1) / g_low);
  const group_cuda::AlignedWordStore low_words{reinterpret_cast<std::uint32_t*>(a.low_sections.codes)};
  for (int task = threadIdx.x; task < sign_tasks; task += blockDim.x) {
    const int c = task % W, jl = (task / W) * g_low;
    const std::int64_t j0 = t0 + jl, len = a.low_grid.group_size(j0 / g_low);
    auto value = [&](std::int64_t j) { return lo[(j - t0) * S + c]; };
    sign_format::encode_group<true>(low_words, a.low_sections.scales, a.low_sections.mins, a.low_grid.group_index(h, c, j0 / g_low),
                                    a.low_sd, group_format::code_word(a.low_layout, a.low_grid, 1, h, c, j0), j0, len, value);
  }
}

// The rows of a decoded tile into `dst` ([rows, D] values of O from the tile's first), 16 bytes per store: V = 16 /
// sizeof(O) values of one row (D % 8 == 0), each found through the slot table (>= 0: the high tile; < 0: the low
// tile; kInvalidSlot: a row of an invalid mask, the quiet NaN that the scatter writes), rounded to nearest even by
// the hardware conversions (the children's bits for every non-NaN value).
template <DType O>
__device__ inline void write_rows(uint4* dst, int rows, int D, const std::int32_t* slot, const float* hi, int SH, const float* lo,
                                  int S) {
  constexpr int V = O == DType::f32 ? 4 : 8;
  const int per_row = D / V;
  for (int v = threadIdx.x; v < rows * per_row; v += blockDim.x) {
    const int r = v / per_row, c0 = (v - r * per_row) * V;
    std::uint32_t b[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const std::int32_t s = slot[c0 + j];
      const float x = s >= 0 ? hi[r * SH + s] : lo[r * S + (s != kInvalidSlot ? -1 - s : 0)];
      if constexpr (O == DType::f32) {
        b[j] = s != kInvalidSlot ? __float_as_uint(x) : 0x7fc00000u;
      } else {
        b[j] = s != kInvalidSlot ? group_cuda::to_bits16<O>(x) : (O == DType::f16 ? 0x7e00u : 0x7fc0u);
      }
    }
    if constexpr (O == DType::f32) {
      dst[v] = make_uint4(b[0], b[1], b[2], b[3]);
    } else {
      dst[v] = make_uint4(b[0] | (b[1] << 16), b[2] | (b[3] << 16), b[4] | (b[5] << 16), b[6] | (b[7] << 16));
    }
  }
}

template <unsigned BITS, int N, bool Complex>
__global__ void __launch_bounds__(kThreads) decode_split_tile(void* __restrict__ out, DType out_dtype, Args a,
                                                               sign_fft_tile::Twiddles tw) {
  constexpr int n = 2 * N, W = Complex ? 2 * n : n, S = W + 1;
  extern __shared__ uint4 shared4[];
  dependent_launch::wait_for_previous_grid();
  dependent_launch::allow_next_grid();
  const int D = a.channels, k = a.high, SH = k + 1;
  float* hi = reinterpret_cast<float*>(shared4);
  float* lo = hi + kTile * SH;
  auto* slot = reinterpret_cast<std::int32_t*>(lo + kTile * S);
  const std::int64_t h = blockIdx.y, t0 = static_cast<std::int64_t>(blockIdx.x) * kTile;
  const int valid = static_cast<int>(a.tokens - t0 < kTile ? a.tokens - t0 : kTile);
  const std::int64_t m = tile_mask(a, h, t0);
  for (int c = threadIdx.x; c < D; c += blockDim.x) slot[c] = mixed_channel_split::table_entry(a.mask, D, k, m, c).slot;
  // The sign groups (sign_cuda's decode_tile, group by group) into the fp32 spectrum tile.
  const int g_low = static_cast<int>(a.low_grid.group);
  const int sign_tasks = W * ((valid + g_low - 1) / g_low), row_groups = valid / 32, high_tasks = k * row_groups;
  const group_cuda::AlignedWordLoad low_words{reinterpret_cast<const std::uint32_t*>(a.low_sections.codes)};
  for (int task = threadIdx.x; task < sign_tasks; task += blockDim.x) {
    const int c = task % W, jl = (task / W) * g_low;
    const std::int64_t j0 = t0 + jl, len = a.low_grid.group_size(j0 / g_low);
    const float sc = group_format::get_scalar(a.low_sections.scales, a.low_grid.group_index(h, c, j0 / g_low), a.low_sd);
    group_format::WordRunReader<group_cuda::AlignedWordLoad> rd(low_words, group_format::code_word(a.low_layout, a.low_grid, 1, h, c, j0),
                                                                1);
    for (std::int64_t j = 0; j < len; ++j) lo[(jl + j) * S + c] = sign_format::decode_value(rd.next(), sc, a.reconstruction);
  }
  __syncthreads();
  if (threadIdx.x < kTile) {  // the FFT warps: one token each
    if (threadIdx.x < valid) {
      float* row = lo + threadIdx.x * S;
      sign_fft_tile::inverse_row<N, Complex>([&](int c) { return row[c]; }, [&](int j, float v) { row[j] = v; }, tw);
    }
  } else {  // meanwhile the uniform groups: channel i, row group q (q fastest), decoded_value (the reference's two
            // roundings) into the fp32 tile of the high channels
    for (int t = threadIdx.x - kTile; t < high_tasks; t += kThreads - kTile) {
      const int q = t % row_groups, i = t / row_groups;
      const std::int64_t gidx = a.high_grid.group_index(h, i, t0 / 32 + q);
      const float scale = group_cuda::load_scalar(a.high_sections.scales, gidx, a.high_sd);
      const float mn = group_cuda::load_scalar(a.high_sections.mins, gidx, a.high_sd);
      const auto* words = reinterpret_cast<const std::uint32_t*>(a.high_sections.codes) +
                          group_format::code_word(a.high_layout, a.high_grid, BITS, h, i, t0 + 32 * q);
      std::uint32_t w[BITS];
#pragma unroll
      for (unsigned b = 0; b < BITS; ++b) w[b] = words[b];
#pragma unroll
      for (unsigned r = 0; r < 32; ++r) {
        const unsigned code = (w[(r * BITS) / 32] >> ((r * BITS) % 32)) & ((1u << BITS) - 1u);
        hi[(q * 32 + r) * SH + i] = uniform_cuda::coder::decoded_value(code, scale, mn);
      }
    }
  }
  __syncthreads();
  auto* dst = reinterpret_cast<uint4*>(static_cast<std::uint8_t*>(out) + (h * a.tokens + t0) * D * dtype_size(out_dtype));
  if (out_dtype == DType::f16) {
    write_rows<DType::f16>(dst, valid, D, slot, hi, SH, lo, S);
  } else if (out_dtype == DType::bf16) {
    write_rows<DType::bf16>(dst, valid, D, slot, hi, SH, lo, S);
  } else {
    write_rows<DType::f32>(dst, valid, D, slot, hi, SH, lo, S);
  }
}

const sign_fft_tile::Twiddles& twiddles() {
  static const sign_fft_tile::Twiddles t = sign_fft_tile::make_twiddles();
  return t;
}

Args args_of(const Children& c, const mixed_channel_cuda::Split& s, std::int64_t first_row, const BlockShape& shape,
             const std::uint8_t* high_bytes, const std::uint8_t* low_bytes) {
  const std::int64_t k = s.high, n = s.channels - k;
  const BlockShape hs{shape.heads, shape.tokens, k}, ls{shape.heads, shape.tokens, n};
  Args a{};
  a.mask = s.mask;
  a.masks = s.masks;
  a.rows_per_mask = s.rows_per_mask;
  a.first_row = first_row;
  a.channels = static_cast<int>(s.channels);
  a.high = static_cast<int>(k);
  a.tokens = shape.tokens;
  a.high_grid = group_format::grid_of(c.high, hs, k);
  a.low_grid = group_format::grid_of(c.low, ls, fft_components(c.low.fft, n));
  auto* hb = const_cast<std::uint8_t*>(high_bytes);
  auto* lb = const_cast<std::uint8_t*>(low_bytes);
  a.high_sections = uniform_format::sections(c.high.layout, a.high_grid, c.high.bits, c.high.scale_dtype, hb);
  a.low_sections = sign_format::sections(c.low.layout, a.low_grid, c.low.scale_dtype, lb);
  if (c.low.layout != CodeLayout::release) a.low_sections.mins = nullptr;  // no zero points stored
  a.high_sd = c.high.scale_dtype;
  a.low_sd = c.low.scale_dtype;
  a.high_layout = c.high.layout;
  a.low_layout = c.low.layout;
  a.reconstruction = c.low.reconstruction;
  return a;
}

// Calls f(bits, N, Complex) as integral constants for the children's configuration (refusal() has checked it).
template <class F>
void dispatch(const Children& c, std::int64_t n, F&& f) {
  auto with_fft = [&](auto bits) {
    auto with_kind = [&](auto half) {
      if (c.low.fft == SignFft::complex) {
        f(bits, half, std::true_type{});
      } else {
        f(bits, half, std::false_type{});
      }
    };
    switch (n) {
      case 16: with_kind(std::integral_constant<int, 8>{}); break;
      case 32: with_kind(std::integral_constant<int, 16>{}); break;
      case 64: with_kind(std::integral_constant<int, 32>{}); break;
      case 128: with_kind(std::integral_constant<int, 64>{}); break;
      default: VIDKV_THROW(CudaError, "mixed_channel (fused): no kernel for ", n, " low channels");
    }
  };
  switch (c.high.bits) {
    case 1: with_fft(std::integral_constant<unsigned, 1>{}); break;
    case 2: with_fft(std::integral_constant<unsigned, 2>{}); break;
    case 4: with_fft(std::integral_constant<unsigned, 4>{}); break;
    case 8: with_fft(std::integral_constant<unsigned, 8>{}); break;
    default: VIDKV_THROW(CudaError, "mixed_channel (fused): no kernel for ", c.high.bits, "-bit uniform");
  }
}

// The grid of a part: one CTA per tile of kTile tokens of each head.
dim3 tiles_of(const BlockShape& shape) {
  return dim3(static_cast<unsigned>((shape.tokens + kTile - 1) / kTile), static_cast<unsigned>(shape.heads));
}

// Launches Kernel on `grid` x kThreads with `shared` bytes of dynamic shared memory (allowed first: above 48 KiB for
// the complex FFT's tiles) as a programmatic dependent of the kernel before it on `st`.
template <auto Kernel, class... KernelArgs>
void launch(dim3 grid, std::size_t shared, cudaStream_t st, const char* what, KernelArgs&&... args) {
  cuda_kernels::allow_dynamic_smem(reinterpret_cast<const void*>(Kernel), shared, what);
  dependent_launch::launch_dependent<Kernel>(grid, kThreads, shared, st, std::forward<KernelArgs>(args)...);
  fused_launches.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void encode(const Children& c, const mixed_channel_cuda::Split& split, std::int64_t first_row, const BlockShape& shape,
            const void* in, DType in_dtype, std::uint8_t* high_bytes, std::uint8_t* low_bytes, void* stream) {
  if (shape.heads * shape.tokens == 0) return;
  constexpr const char* kWhat = "mixed_channel encode (fused split tile)";
  const Args a = args_of(c, split, first_row, shape, high_bytes, low_bytes);
  dispatch(c, split.channels - split.high, [&](auto bits, auto half, auto complex) {
    constexpr unsigned B = decltype(bits)::value;
    constexpr int N = decltype(half)::value;
    constexpr bool Complex = decltype(complex)::value;
    const std::size_t shared = encode_shared_bytes(a.channels, Complex ? 4 * N : 2 * N);
    group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
      constexpr DType T = decltype(tag)::value;
      if constexpr (T != DType::f32) {
        launch<encode_split_tile<T, B, N, Complex>>(tiles_of(shape), shared, static_cast<cudaStream_t>(stream), kWhat, in, a, twiddles());
      } else {
        VIDKV_THROW(CudaError, kWhat, ": fp32 input (encode_refusal refuses it)");
      }
    });
  });
  check_launch(kWhat);
}

void decode(const Children& c, const mixed_channel_cuda::Split& split, std::int64_t first_row, const BlockShape& shape,
            const std::uint8_t* high_bytes, const std::uint8_t* low_bytes, void* out, DType out_dtype, void* stream) {
  if (shape.heads * shape.tokens == 0) return;
  constexpr const char* kWhat = "mixed_channel decode (fused split tile)";
  const Args a = args_of(c, split, first_row, shape, high_bytes, low_bytes);
  dispatch(c, split.channels - split.high, [&](auto bits, auto half, auto complex) {
    constexpr unsigned B = decltype(bits)::value;
    constexpr int N = decltype(half)::value;
    constexpr bool Complex = decltype(complex)::value;
    const std::size_t shared = decode_shared_bytes(a.channels, a.high, Complex ? 4 * N : 2 * N);
    launch<decode_split_tile<B, N, Complex>>(tiles_of(shape), shared, static_cast<cudaStream_t>(stream), kWhat, out, out_dtype, a,
                                             twiddles());
  });
  check_launch(kWhat);
}

std::int64_t launches() { return fused_launches.load(std::memory_order_relaxed); }

}  // namespace vidkv::mixed_channel_fused
