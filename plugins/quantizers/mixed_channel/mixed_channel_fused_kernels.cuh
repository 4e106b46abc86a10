// mixed_channel on CUDA, fused (mixed_channel_fused.h): the kernels, one CTA per tile of 64 tokens of one head, and
// their launchers by the uniform child's bit width (launch_encode / launch_decode). CUDA sources only: included by
// mixed_channel_fused.cu (the entry points, which call the launchers) and by mixed_channel_fused_bits{1,2,4,8}.cu, each
// of which instantiates the launchers of one bit width, so that the build compiles the 160 kernels (4 bit widths x 4
// FFT lengths x real / complex; the encode for fp16 and bf16 input, in its present and first versions) in four
// translation units side by side instead of one (146 s in one, on one core of the development machine).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>
#include <utility>

#include "vidkv/core/cuda/async_copy.cuh"
#include "vidkv/core/cuda/dependent_launch.cuh"
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

namespace vidkv::mixed_channel_fused::kernels {

using group_format::CodeLayout;
using group_format::GroupGrid;
using mixed_channel_split::kInvalidSlot;

// Tokens per CTA (mixed_channel_fused.h's kTileTokens) and threads. Decode: the FFT phase transforms one token per
// thread on the first kTile threads while the other kTile decode the uniform groups, so that the two children's work
// overlaps inside the CTA. Encode: the first kTile threads code the uniform groups while the others stage the low
// channels as fp32, then every thread transforms half a token (sign_fft_tile.h's forward halves: threads t and
// t + kTile share token t), then every thread codes sign groups. 64 tokens keep a CTA's shared memory near 33 KB for
// D = 128, k = 64 and the real FFT (vidkv-k1.5-v1.58): 6 decode CTAs per multiprocessor, 5 encode CTAs (registers
// capped for that: encode_blocks); the complex FFT's tiles (about 49 KB) allow 4 of each. History on the H200 (one
// 32k-token layer of vidkv-k1.5-v1.58 keys): 128 tokens with every thread transforming a whole token held 3 CTAs of
// 67 KB per multiprocessor (16% of the warp slots), 69 us; 64 tokens with one whole token per thread on half the CTA
// while the other half coded the uniform groups, 4 CTAs (128 registers per thread: the 32-point FFT held per
// thread), 68 us (90 us under Nsight Compute's locked clocks, where issue slots were 43% busy with 0.77 eligible
// warps of 3.8 per scheduler); the present encode (with the staged mask words and word-wise sign codes) 51-56 us,
// 5 CTAs, a third fewer instructions.
constexpr int kTile = static_cast<int>(kTileTokens);
constexpr int kThreads = 2 * kTile;
// Encode CTAs per multiprocessor that the register cap (launch bounds) leaves room for, by FFT half length N: 5 up
// to 64 low channels (96 registers per thread; uncapped the compiler takes about 156), 3 for 128 (up to 168
// registers; the complex FFT's tiles of at least 82 KB fit 2 CTAs anyway, the real FFT's 50-83 KB fit 4 for D up
// to about 176: a cap of 4 there is not measured).
constexpr int encode_blocks(int N) { return N <= 32 ? 5 : 3; }

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
// kernels build its tables in shared memory from the mask bytes (stage_mask_words and table_entry_from_words; the
// first versions: table_entry, mask_rank over D / 8 bytes per channel from global memory), instead of the unfused
// path's table kernel.
__device__ inline std::int64_t tile_mask(const Args& a, std::int64_t h, std::int64_t t0) {
  return mixed_channel_split::mask_of_row(a.first_row + h * a.tokens + t0, a.masks, a.rows_per_mask);
}

template <DType T>
__device__ inline float widen(std::uint16_t bits) {
  return T == DType::f16 ? __half2float(__ushort_as_half(bits)) : __uint_as_float(static_cast<std::uint32_t>(bits) << 16);
}

// The tile's mask as 32-bit words in shared memory (words[w] bit b: channel 32 w + b, LSB first as in the mask
// section; zero past D), copied from the section's bytes (mask m starts on byte m * D / 8: D % 8 == 0). Ends on a
// barrier. (D + 31) / 32 words: within the first 4 * ((D + 31) / 32) bytes of any tile region.
__device__ inline void stage_mask_words(const Args& a, std::int64_t m, std::uint32_t* words) {
  const int bytes = a.channels / 8, word_bytes = 4 * ((a.channels + 31) / 32);
  const std::uint8_t* src = a.mask + m * bytes;
  auto* dst = reinterpret_cast<std::uint8_t*>(words);
  for (int i = threadIdx.x; i < word_bytes; i += blockDim.x) dst[i] = i < bytes ? src[i] : 0;
  __syncthreads();
}

// An encode CTA's tile in shared memory: the rows as loaded (raw, [valid, D] 2-byte values), the low channels as fp32
// (lo, [kTile, S] with S = components + 1: the transform's rows, padded against bank conflicts) and the channel
// tables (high_source [k], low_source [D - k]: the tile's mask's channel of each child column).
struct EncodeTile {
  std::uint16_t* raw;
  float* lo;
  std::int32_t* high_source;
  std::int32_t* low_source;
  std::int64_t h, t0;  // head, first token
  int valid;           // tokens of the tile (< kTile in a part's last tile)
};

// Stages the tile: 16-byte asynchronous copies of its rows, its mask's tables built meanwhile (StagedMask: from the
// mask's words staged in lo, else from global memory byte by byte as the first version did); ends on a barrier.
template <int S, bool StagedMask>
__device__ inline EncodeTile stage_encode_tile(const void* __restrict__ in, const Args& a) {
  extern __shared__ uint4 shared4[];
  const int D = a.channels, k = a.high;
  EncodeTile t;
  t.raw = reinterpret_cast<std::uint16_t*>(shared4);
  t.lo = reinterpret_cast<float*>(t.raw + kTile * D);  // kTile * D * 2 bytes: a multiple of 16 (D % 8 == 0)
  t.high_source = reinterpret_cast<std::int32_t*>(t.lo + kTile * S);
  t.low_source = t.high_source + k;
  t.h = blockIdx.y;
  t.t0 = static_cast<std::int64_t>(blockIdx.x) * kTile;
  t.valid = static_cast<int>(a.tokens - t.t0 < kTile ? a.tokens - t.t0 : kTile);
  const auto* src = reinterpret_cast<const uint4*>(static_cast<const std::uint16_t*>(in) + (t.h * a.tokens + t.t0) * D);
  cuda_async::issue16(shared4, src, t.valid * D / 8);
  const std::int64_t m = tile_mask(a, t.h, t.t0);
  auto* words = reinterpret_cast<std::uint32_t*>(t.lo);  // lo is free until the low channels are staged
  if constexpr (StagedMask) stage_mask_words(a, m, words);
  for (int c = threadIdx.x; c < D; c += blockDim.x) {  // the gather's rule: an invalid mask moves by fallback_slot
    const std::int32_t s =
        StagedMask ? mixed_channel_split::table_entry_from_words(words, D, k, c).moved : mixed_channel_split::table_entry(a.mask, D, k, m, c).moved;
    if (s >= 0) t.high_source[s] = c;
    else t.low_source[-1 - s] = c;
  }
  cuda_async::wait_all();
  __syncthreads();
  return t;
}

// The tile's uniform groups, tasks first, first + stride, ...: channel pair p, row group q of 32 tokens (q varying
// fastest, so that neighbouring threads write a channel's consecutive groups), from the staged rows.
template <DType T, unsigned BITS>
__device__ inline void code_uniform_groups(const EncodeTile& t, const Args& a, int first, int stride) {
  const int D = a.channels, row_groups = t.valid / 32, pair_tasks = (a.high / 2) * row_groups;
  for (int task = first; task < pair_tasks; task += stride) {
    const int q = task % row_groups, p = task / row_groups;
    const int c0 = t.high_source[2 * p], c1 = t.high_source[2 * p + 1];
    std::uint32_t pair[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const std::uint16_t* row = t.raw + (q * 32 + i) * D;
      pair[i] = static_cast<std::uint32_t>(row[c0]) | (static_cast<std::uint32_t>(row[c1]) << 16);
    }
    const auto x = [&](int i) { return group_cuda::raw2_to_float2<T>(pair[i]).x; };
    const auto y = [&](int i) { return group_cuda::raw2_to_float2<T>(pair[i]).y; };
    float2 mn, mx;
    uniform_cuda::coder::pair_min_max<T>(pair, mn, mx);
    const std::int64_t gi = t.t0 / 32 + q;
    uniform_cuda::coder::store_group_codes<BITS>(uniform_cuda::coder::group_codes_in_range<BITS>(x, mn.x, mx.x, a.high_sd),
                                                 a.high_sd, a.high_grid.group_index(t.h, 2 * p, gi), a.high_sections);
    uniform_cuda::coder::store_group_codes<BITS>(uniform_cuda::coder::group_codes_in_range<BITS>(y, mn.y, mx.y, a.high_sd),
                                                 a.high_sd, a.high_grid.group_index(t.h, 2 * p + 1, gi), a.high_sections);
  }
}

// The low channels of the staged rows as fp32 into lo (row r, column c: low channel c of token r), elements first,
// first + stride, ... (consecutive elements: one token's consecutive low channels).
// When n divides the stride (encode_split_tile's 64 staging threads and the first version's 128, for n = 64 and
// below), a thread's elements all lie in column first % n, rows first / n + m * (stride / n) below valid: its source
// channel is read once and its rows walked by pointer, 4 at a time (one shared load, conversion and store per
// element, where the general loop also divides the index and reloads the table).
template <DType T, int n, int S>
__device__ inline void stage_low_channels(const EncodeTile& t, const Args& a, int first, int stride) {
  if (stride % n == 0) {
    const int c = first % n, row_step = stride / n;
    const std::uint16_t* src = t.raw + static_cast<std::ptrdiff_t>(first / n) * a.channels + t.low_source[c];
    float* dst = t.lo + (first / n) * S + c;
    const std::ptrdiff_t src_step = static_cast<std::ptrdiff_t>(row_step) * a.channels;
    int r = first / n;
    for (; r + 3 * row_step < t.valid; r += 4 * row_step, src += 4 * src_step, dst += 4 * row_step * S) {
      std::uint16_t v[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = src[i * src_step];
#pragma unroll
      for (int i = 0; i < 4; ++i) dst[i * row_step * S] = widen<T>(v[i]);
    }
    for (; r < t.valid; r += row_step, src += src_step, dst += row_step * S) *dst = widen<T>(*src);
    return;
  }
  for (int i = first; i < t.valid * n; i += stride) {
    const int r = i / n, c = i - r * n;
    t.lo[r * S + c] = widen<T>(t.raw[r * a.channels + t.low_source[c]]);
  }
}

// The sign groups of the transformed tile, one per thread at a time: component c, groups of G tokens. WordsDirect:
// each code word assembled in a register and stored once (the fused path's groups fill whole words), else through
// sign_format::encode_group's 64-bit run writer as the first version did; the same sum of |x| in double in position
// order either way, so the same scales and bytes.
template <int W, int S, bool WordsDirect>
__device__ inline void code_sign_groups(const EncodeTile& t, const Args& a) {
  const int g_low = static_cast<int>(a.low_grid.group);
  const int sign_tasks = W * ((t.valid + g_low - 1) / g_low);
  const group_cuda::AlignedWordStore low_words{reinterpret_cast<std::uint32_t*>(a.low_sections.codes)};
  for (int task = threadIdx.x; task < sign_tasks; task += blockDim.x) {
    const int c = task % W, jl = (task / W) * g_low;
    const std::int64_t j0 = t.t0 + jl, len = a.low_grid.group_size(j0 / g_low);
    const std::int64_t gidx = a.low_grid.group_index(t.h, c, j0 / g_low);
    const std::int64_t first_word = group_format::code_word(a.low_layout, a.low_grid, 1, t.h, c, j0);
    if constexpr (WordsDirect) {
      const float* column = t.lo + jl * S + c;
      const int n = static_cast<int>(len);
      double sum_abs = 0.0;
      for (int w = 0; w * 32 < n; ++w) {
        std::uint32_t word = 0;
#pragma unroll
        for (int b = 0; b < 32; ++b) {
          if (w * 32 + b < n) {
            const float x = column[(w * 32 + b) * S];
            sum_abs += fabs(static_cast<double>(x));
            word |= sign_format::encode_value(x) << b;
          }
        }
        low_words(first_word + w, word);
      }
      group_format::put_scalar(a.low_sections.scales, gidx, a.low_sd, static_cast<float>(sum_abs / static_cast<double>(len)));
      if (a.low_sections.mins) group_format::put_scalar(a.low_sections.mins, gidx, a.low_sd, 0.0f);
    } else {
      auto value = [&](std::int64_t j) { return t.lo[(j - t.t0) * S + c]; };
      sign_format::encode_group<true>(low_words, a.low_sections.scales, a.low_sections.mins, gidx, a.low_sd, first_word, j0, len, value);
    }
  }
}

// The encode, half a token's transform per thread: the first kTile threads code the uniform groups while the others
// stage the low channels; then token threadIdx.x % kTile, frequencies of parity threadIdx.x / kTile (whole warps per
// half: no divergence); both halves load the whole row before the barrier and store after it; then the sign groups.
template <DType T, unsigned BITS, int N, bool Complex>
__global__ void __launch_bounds__(kThreads, encode_blocks(N)) encode_split_tile(const void* __restrict__ in, Args a,
                                                                                 sign_fft_tile::Twiddles tw) {
  constexpr int n = 2 * N, W = Complex ? 2 * n : n, S = W + 1;
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  const EncodeTile t = stage_encode_tile<S, true>(in, a);
  if (threadIdx.x < kTile) code_uniform_groups<T, BITS>(t, a, threadIdx.x, kTile);
  else stage_low_channels<T, n, S>(t, a, threadIdx.x - kTile, kThreads - kTile);
  __syncthreads();
  const int token = static_cast<int>(threadIdx.x) % kTile;
  const bool odd = threadIdx.x >= kTile;
  float* row = t.lo + token * S;
  float re[N / 2], im[N / 2];
  const auto load = [&](int c) { return row[c]; };
  if (token < t.valid) {
    if (odd) sign_fft_tile::forward_half_first_pass<N, 1>(load, re, im, tw);
    else sign_fft_tile::forward_half_first_pass<N, 0>(load, re, im, tw);
  }
  __syncthreads();
  if (token < t.valid) {
    const auto store = [&](int c, float v) { row[c] = v; };
    if (odd) sign_fft_tile::forward_half_finish<N, Complex, 1>(re, im, store, tw);
    else sign_fft_tile::forward_half_finish<N, Complex, 0>(re, im, store, tw);
  }
  __syncthreads();
  code_sign_groups<W, S, true>(t, a);
}

// The first version of the encode (VIDKV_CUDA_FUSED_ENCODE=first, for A / B runs): the tables from the mask bytes in
// global memory, every thread staging the low channels, then the first kTile threads transforming one whole token
// each while the others code the uniform groups; then the sign groups through the run writer. The same bytes as
// encode_split_tile.
template <DType T, unsigned BITS, int N, bool Complex>
__global__ void __launch_bounds__(kThreads) encode_split_tile_first(const void* __restrict__ in, Args a,
                                                                           sign_fft_tile::Twiddles tw) {
  constexpr int n = 2 * N, W = Complex ? 2 * n : n, S = W + 1;
  dependent_launch::wait_for_previous_grid();
  dependent_launch::allow_next_grid();
  const EncodeTile t = stage_encode_tile<S, false>(in, a);
  stage_low_channels<T, n, S>(t, a, threadIdx.x, kThreads);
  __syncthreads();
  if (threadIdx.x < kTile) {
    if (threadIdx.x < t.valid) {
      float* row = t.lo + threadIdx.x * S;
      sign_fft_tile::forward_row<N, Complex>([&](int c) { return row[c]; }, [&](int c, float v) { row[c] = v; }, tw);
    }
  } else {
    code_uniform_groups<T, BITS>(t, a, threadIdx.x - kTile, kThreads - kTile);
  }
  __syncthreads();
  code_sign_groups<W, S, false>(t, a);
}

// One decoded value as the bits of O: x, or for a channel of an invalid mask (kInvalidSlot) the quiet NaN that the
// scatter writes; rounded to nearest even by the hardware conversions (the children's bits for every non-NaN value).
template <DType O>
__device__ inline std::uint32_t output_bits(float x, bool invalid) {
  if constexpr (O == DType::f32) {
    return invalid ? 0x7fc00000u : __float_as_uint(x);
  } else {
    return invalid ? (O == DType::f16 ? 0x7e00u : 0x7fc0u) : group_cuda::to_bits16<O>(x);
  }
}

template <DType O>
__device__ inline uint4 pack_output(const std::uint32_t (&b)[O == DType::f32 ? 4 : 8]) {
  if constexpr (O == DType::f32) {
    return make_uint4(b[0], b[1], b[2], b[3]);
  } else {
    return make_uint4(b[0] | (b[1] << 16), b[2] | (b[3] << 16), b[4] | (b[5] << 16), b[6] | (b[7] << 16));
  }
}

// Two values as the 2-byte pair of O (a in the low half), each rounded to nearest even by one cvt.rn.{f16,bf16}x2.f32.
template <DType O>
__device__ inline std::uint32_t pack_pair(float a, float b) {
  if constexpr (O == DType::f16) {
    const __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const std::uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const std::uint32_t*>(&h);
  }
}

// The rows of a decoded tile into `dst` ([rows, D] values of O from the tile's first), 16 bytes per store: V = 16 /
// sizeof(O) values of one row (D % 8 == 0), each found through the slot table (>= 0: the high tile; < 0: the low
// tile; kInvalidSlot: a row of an invalid mask). hi and lo are one array (lo == hi + kTile * SH). When blockDim.x is
// a multiple of the vectors per row, a thread's columns are the same in every row it writes: their sources
// (element and row stride in hi) are looked up once, not per row (per_vector_lookup: for every vector, as the first
// version of the kernel did).
// kS: the row stride (in floats) of the tiles that the unrolled path below reads at compile-time offsets.
template <DType O, int kS>
__device__ inline void write_rows(uint4* dst, int rows, int D, const std::int32_t* slot, const float* hi, int SH, const float* lo,
                                  int S, bool per_vector_lookup) {
  constexpr int V = O == DType::f32 ? 4 : 8;
  constexpr int kRowSteps = kTile * (128 / V) / kThreads;  // the unrolled path's rows per thread (D = 128: 8)
  const int per_row = D / V;
  if (blockDim.x % per_row == 0 && !per_vector_lookup) {
    const int c0 = static_cast<int>(threadIdx.x) % per_row * V, row_step = static_cast<int>(blockDim.x) / per_row;
    const int lo_at = static_cast<int>(lo - hi);
    int at[V], stride[V];
    bool invalid[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const std::int32_t s = slot[c0 + j];
      invalid[j] = s == kInvalidSlot;
      at[j] = s >= 0 ? s : lo_at + (invalid[j] ? 0 : -1 - s);
      stride[j] = s >= 0 ? SH : S;
    }
    const int r0 = static_cast<int>(threadIdx.x) / per_row;
    if constexpr (O != DType::f32) {
      // A full tile whose rows this thread walks in kRowSteps steps, and whose own columns all come from tiles of
      // row stride kS (checked per thread: with k + 1 = W + 1, vidkv-k1.5-v1.58's 65, every thread) and none from an
      // invalid mask: the rows at compile-time offsets from one shared address per column, two values converted by
      // one cvt.rn.{f16,bf16}x2.f32 (each half rounded to nearest even, as output_bits' conversion of each value).
      // r0 < row_step and kRowSteps * row_step == rows, so these are the rows r0 + i * row_step of the loop below.
      bool plain = rows == kTile && row_step * kRowSteps == kTile;
#pragma unroll
      for (int j = 0; j < V; ++j) plain = plain && !invalid[j] && stride[j] == kS;
      if (plain) {
        const float* col[V];
#pragma unroll
        for (int j = 0; j < V; ++j) col[j] = hi + at[j] + r0 * kS;
#pragma unroll
        for (int i = 0; i < kRowSteps; ++i) {
          std::uint32_t w[V / 2];
#pragma unroll
          for (int m = 0; m < V / 2; ++m) w[m] = pack_pair<O>(col[2 * m][i * row_step * kS], col[2 * m + 1][i * row_step * kS]);
          dst[(r0 + i * row_step) * per_row + c0 / V] = make_uint4(w[0], w[1], w[2], w[3]);
        }
        return;
      }
    }
    for (int r = r0; r < rows; r += row_step) {
      std::uint32_t b[V];
#pragma unroll
      for (int j = 0; j < V; ++j) b[j] = output_bits<O>(hi[at[j] + r * stride[j]], invalid[j]);
      dst[r * per_row + c0 / V] = pack_output<O>(b);
    }
    return;
  }
  for (int v = threadIdx.x; v < rows * per_row; v += blockDim.x) {
    const int r = v / per_row, c0 = (v - r * per_row) * V;
    std::uint32_t b[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const std::int32_t s = slot[c0 + j];
      const float x = s >= 0 ? hi[r * SH + s] : lo[r * S + (s != kInvalidSlot ? -1 - s : 0)];
      b[j] = output_bits<O>(x, s == kInvalidSlot);
    }
    dst[v] = pack_output<O>(b);
  }
}

template <unsigned BITS, int N, bool Complex>
__global__ void __launch_bounds__(kThreads) decode_split_tile(void* __restrict__ out, DType out_dtype, Args a,
                                                               sign_fft_tile::Twiddles tw, bool first_version) {
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
  if (first_version) {
    for (int c = threadIdx.x; c < D; c += blockDim.x) slot[c] = mixed_channel_split::table_entry(a.mask, D, k, m, c).slot;
  } else {  // the mask's words staged in hi (free until the uniform groups are decoded, after a barrier)
    auto* words = reinterpret_cast<std::uint32_t*>(hi);
    stage_mask_words(a, m, words);
    for (int c = threadIdx.x; c < D; c += blockDim.x) slot[c] = mixed_channel_split::table_entry_from_words(words, D, k, c).slot;
  }
  // The sign groups (sign_cuda's decode_tile, group by group) into the fp32 spectrum tile: a code word loaded at a
  // time and its 32 bits read by constant shifts (the fused path's groups fill whole words); the first version read
  // them through the 64-bit run reader, bit by bit. The same values.
  const int g_low = static_cast<int>(a.low_grid.group);
  const int sign_tasks = W * ((valid + g_low - 1) / g_low), row_groups = valid / 32, high_tasks = k * row_groups;
  const group_cuda::AlignedWordLoad low_words{reinterpret_cast<const std::uint32_t*>(a.low_sections.codes)};
  for (int task = threadIdx.x; task < sign_tasks; task += blockDim.x) {
    const int c = task % W, jl = (task / W) * g_low;
    const std::int64_t j0 = t0 + jl, len = a.low_grid.group_size(j0 / g_low);
    const float sc = group_format::get_scalar(a.low_sections.scales, a.low_grid.group_index(h, c, j0 / g_low), a.low_sd);
    const std::int64_t first_word = group_format::code_word(a.low_layout, a.low_grid, 1, h, c, j0);
    if (first_version) {
      group_format::WordRunReader<group_cuda::AlignedWordLoad> rd(low_words, first_word, 1);
      for (std::int64_t j = 0; j < len; ++j) lo[(jl + j) * S + c] = sign_format::decode_value(rd.next(), sc, a.reconstruction);
    } else {
      float* column = lo + jl * S + c;
      const int n_values = static_cast<int>(len), whole = n_values / 32;
      const float zero_value = sign_format::decode_value(0u, sc, a.reconstruction), one_value = sign_format::decode_value(1u, sc, a.reconstruction);
      for (int w = 0; w < whole; ++w) {  // whole words: no bound test per bit
        const std::uint32_t word = low_words(first_word + w);
#pragma unroll
        for (int b = 0; b < 32; ++b) column[(w * 32 + b) * S] = (word >> b) & 1u ? one_value : zero_value;
      }
      if (whole * 32 < n_values) {
        const std::uint32_t word = low_words(first_word + whole);
#pragma unroll
        for (int b = 0; b < 32; ++b)
          if (whole * 32 + b < n_values) column[(whole * 32 + b) * S] = (word >> b) & 1u ? one_value : zero_value;
      }
    }
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
    write_rows<DType::f16, S>(dst, valid, D, slot, hi, SH, lo, S, first_version);
  } else if (out_dtype == DType::bf16) {
    write_rows<DType::bf16, S>(dst, valid, D, slot, hi, SH, lo, S, first_version);
  } else {
    write_rows<DType::f32, S>(dst, valid, D, slot, hi, SH, lo, S, first_version);
  }
}

// Launches Kernel on `grid` x kThreads with `shared` bytes of dynamic shared memory (allowed first: above 48 KiB for
// the complex FFT's tiles) as a programmatic dependent of the kernel before it on `st`.
template <auto Kernel, class... KernelArgs>
void launch(dim3 grid, std::size_t shared, cudaStream_t st, const char* what, KernelArgs&&... args) {
  cuda_kernels::allow_dynamic_smem(reinterpret_cast<const void*>(Kernel), shared, what);
  dependent_launch::launch_dependent<Kernel>(grid, kThreads, shared, st, std::forward<KernelArgs>(args)...);
}

// What a launch needs besides the kernel's Args: the grid (one CTA per tile of each head), the stream, whether to run
// the kernel's first version (VIDKV_CUDA_FUSED_ENCODE=first / VIDKV_CUDA_FUSED_DECODE=first) and the name for errors.
struct Launch {
  dim3 grid;
  cudaStream_t stream;
  bool first_version;
  const char* what;
};

// Calls f(N, Complex) as integral constants for `low` low channels (N = low / 2, the FFT's half length: 16 .. 128
// low channels, refusal() has checked) and the sign child's FFT kind (sign_fft_tile::dispatch_width).
template <class F>
void dispatch_fft(std::int64_t low, bool complex, F&& f) {
  if (!sign_fft_tile::dispatch_width(low, complex, std::forward<F>(f)))
    VIDKV_THROW(CudaError, "mixed_channel (fused): no kernel for ", low, " low channels");
}

// The encode of one part for BITS-bit uniform groups: in, device [heads, tokens, D] values of in_dtype (fp16 or bf16;
// CudaError for fp32, which encode_refusal refuses); `low` = D - k low channels, `complex` the sign child's FFT kind.
// Enqueues one kernel on l.stream.
template <unsigned BITS>
void launch_encode(std::int64_t low, bool complex, const void* in, DType in_dtype, const Args& a, const Launch& l) {
  dispatch_fft(low, complex, [&](auto half, auto is_complex) {
    constexpr int N = decltype(half)::value;
    constexpr bool Complex = decltype(is_complex)::value;
    const std::size_t shared = encode_shared_bytes(a.channels, Complex ? 4 * N : 2 * N);
    group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
      constexpr DType T = decltype(tag)::value;
      if constexpr (T != DType::f32) {
        if (l.first_version) {
          launch<encode_split_tile_first<T, BITS, N, Complex>>(l.grid, shared, l.stream, l.what, in, a,
                                                               sign_fft_tile::twiddles());
        } else {
          launch<encode_split_tile<T, BITS, N, Complex>>(l.grid, shared, l.stream, l.what, in, a,
                                                         sign_fft_tile::twiddles());
        }
      } else {
        VIDKV_THROW(CudaError, l.what, ": fp32 input (encode_refusal refuses it)");
      }
    });
  });
}

// The decode of one part for BITS-bit uniform groups into out, device [heads, tokens, D] values of out_dtype (fp16,
// bf16 or fp32). Enqueues one kernel on l.stream.
template <unsigned BITS>
void launch_decode(std::int64_t low, bool complex, void* out, DType out_dtype, const Args& a, const Launch& l) {
  dispatch_fft(low, complex, [&](auto half, auto is_complex) {
    constexpr int N = decltype(half)::value;
    constexpr bool Complex = decltype(is_complex)::value;
    const std::size_t shared = decode_shared_bytes(a.channels, a.high, Complex ? 4 * N : 2 * N);
    launch<decode_split_tile<BITS, N, Complex>>(l.grid, shared, l.stream, l.what, out, out_dtype, a,
                                                sign_fft_tile::twiddles(), l.first_version);
  });
}

// Instantiated once each, in mixed_channel_fused_bits{1,2,4,8}.cu.
#define VIDKV_MIXED_CHANNEL_FUSED_LAUNCHERS(PREFIX, BITS)                                                                  \
  PREFIX template void launch_encode<BITS>(std::int64_t, bool, const void*, DType, const Args&, const Launch&);        \
  PREFIX template void launch_decode<BITS>(std::int64_t, bool, void*, DType, const Args&, const Launch&);
VIDKV_MIXED_CHANNEL_FUSED_LAUNCHERS(extern, 1)
VIDKV_MIXED_CHANNEL_FUSED_LAUNCHERS(extern, 2)
VIDKV_MIXED_CHANNEL_FUSED_LAUNCHERS(extern, 4)
VIDKV_MIXED_CHANNEL_FUSED_LAUNCHERS(extern, 8)

}  // namespace vidkv::mixed_channel_fused::kernels
