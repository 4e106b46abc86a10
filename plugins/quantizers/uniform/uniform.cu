// uniform on CUDA (uniform_cuda.h): one thread per group; bytes bit-identical to the CPU reference (uniform.cpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "vidkv/core/cuda/async_copy.cuh"
#include "vidkv/core/cuda/dependent_launch.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/cuda/late_wait_count.h"
#include "vidkv/plugins/quantizers/uniform/uniform_cuda.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_group_coder.cuh"
#include "vidkv/plugins/quantizers/uniform/uniform_half_decode.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/cuda/group_cuda_io.cuh"
#include "vidkv/quantization/fragment_permute.h"

namespace vidkv::uniform_cuda {

namespace {

using group_cuda::AlignedWordLoad;
using group_cuda::AlignedWordStore;
using group_format::CodeLayout;
using group_format::GroupAxis;
using group_cuda::Sections;
using group_format::GroupGrid;
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
  const uniform_format::StoredGroup range = uniform_format::stored_group(mn, mx, static_cast<float>(uniform_format::max_code(bits)), sd);
  const std::int64_t gidx = g.group_index(c.h, c.r, c.gi);
  group_format::put_scalar(s.scales, gidx, sd, range.scale);
  group_format::put_scalar(s.mins, gidx, sd, range.mn);
  if constexpr (kWordRuns) {
    group_format::WordRunWriter<AlignedWordStore> w(AlignedWordStore{reinterpret_cast<std::uint32_t*>(s.codes)},
                                                    group_format::code_word(layout, g, bits, c.h, c.r, j0), bits);
    for (std::int64_t j = j0; j < j0 + n; ++j)
      w.put(uniform_format::encode_value(group_cuda::load<T>(in, g.block_offset(c.h, c.r, j)), range.scale, range.mn, bits));
    w.flush();
  }
}

// One byte of the codes section per thread, from the stored scales and mins (any alignment, tails, any bits).
template <DType T>
__global__ void encode_code_bytes(const void* in, GroupGrid g, unsigned bits, DType sd, CodeLayout layout, Sections s,
                                  group_cuda::ByteMap map) {
  const std::int64_t b = map.byte_of_thread(static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
  if (b < 0) return;
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

// --- Fast path: G = 32, bits in {1, 2, 4, 8}, whole groups (the configurations of KIVI and VidKV) ------------------
// The per-group coder (FastCoder, group_codes, decode_group_to_registers, ...) is uniform_group_coder.cuh.
using namespace coder;

// Axis channel, thread t < heads * gpr * pairs takes channel pair p = t % pairs of row group q = t / pairs
// (q = h * gpr + gi: the 32 token rows of that group start at element 32 q C). 32-bit index arithmetic with
// multiply-shift division (group_cuda::Divider): the launch checks that the counts fit.
struct ChannelPairs {
  group_cuda::Divider by_pairs, by_gpr;
  unsigned pairs, gpr, channels;

  explicit ChannelPairs(const GroupGrid& g)
      : by_pairs(static_cast<unsigned>(g.rows / 2)), by_gpr(static_cast<unsigned>(g.groups_per_row())),
        pairs(static_cast<unsigned>(g.rows / 2)), gpr(static_cast<unsigned>(g.groups_per_row())),
        channels(static_cast<unsigned>(g.rows)) {}
  // Threads of a launch (one per channel pair and row group); fits(): they can be counted in 31 bits.
  static std::int64_t threads(const GroupGrid& g) { return g.heads * g.groups_per_row() * (g.rows / 2); }
  static bool fits(const GroupGrid& g) { return threads(g) < (std::int64_t{1} << 31); }

  // First element of the thread's 32 x 2 values; metadata indices of its two groups (channels 2p and 2p + 1).
  __device__ __forceinline__ void of(unsigned t, std::int64_t& first, std::int64_t& ga, std::int64_t& gb) const {
    const unsigned q = by_pairs.div(t), p = t - q * pairs, h = by_gpr.div(q), gi = q - h * gpr;
    first = static_cast<std::int64_t>(q) * 32 * channels + 2 * p;
    ga = (static_cast<std::int64_t>(h) * channels + 2 * p) * gpr + gi;
    gb = ga + gpr;
  }
};

// Axis channel, any input dtype, any even channel count: a thread takes two adjacent channels of one group of 32
// tokens (a 4-byte load of an fp16 pair per token: a warp reads 64 channels = 128 contiguous bytes of each token
// row), keeping the pairs as loaded (32 registers for fp16) so that 4 blocks of 256 fit an SM.
template <DType T, unsigned BITS>
__global__ void __launch_bounds__(256, 4) encode_channel_fast(const void* in, ChannelPairs ix, unsigned threads, DType sd, Sections s) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= threads) return;
  std::int64_t first, ga, gb;
  ix.of(t, first, ga, gb);
  typename group_cuda::RawPair<T>::type raw[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) raw[i] = group_cuda::load_raw2<T>(in, first + static_cast<std::int64_t>(i) * ix.channels);
  const auto x = [&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).x; };
  const auto y = [&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).y; };
  if constexpr (T == DType::f32) {
    store_group_codes<BITS>(group_codes<BITS>(x, sd), sd, ga, s);
    store_group_codes<BITS>(group_codes<BITS>(y, sd), sd, gb, s);
  } else {
    float2 mn, mx;
    pair_min_max<T>(raw, mn, mx);
    store_group_codes<BITS>(group_codes_in_range<BITS>(x, mn.x, mx.x, sd), sd, ga, s);
    store_group_codes<BITS>(group_codes_in_range<BITS>(y, mn.y, mx.y, sd), sd, gb, s);
  }
}

// Axis channel, fp16 / bf16 input, through shared memory: a block takes qb = 256 / pairs consecutive row groups
// q0 .. q0 + qb - 1 of one head (launched only when qb divides gpr), whose token rows are one contiguous run of
// 32 qb C elements: it is loaded with 16-byte coalesced loads, thread (j, p) encodes channel pair p of row group
// q0 + j from shared memory, and the outputs are staged there too, so that each channel's qb consecutive groups
// are written as one run of qb * BITS words, qb scales and qb mins (whole sectors instead of 8 scattered bytes per
// group). Measured on an H200 (28 x 4 x 32768 x 128 fp16, kivi-2 keys): 898 GB/s of fp16 input against 736 for
// encode_channel_fast (whose scattered per-group stores kept L2 at 56% of its throughput with DRAM at 14%).
// (Measured and not kept: a grid of one wave of resident blocks, each taking tiles blockIdx.x, + gridDim.x, ...
// with two tile buffers and the next tile's copies issued before the current one is coded: 31.1 against 26.7 us
// for a 32k-token layer's keys, with 3 blocks of 64 KB per multiprocessor instead of 4 of 32 KB.)
// Shared memory of one block: the input, qb * 32 * C 2-byte values with qb * C <= 2 * 256 (32 KB), then the staged
// outputs, qb * C * (BITS + 2) words <= 5120.
constexpr unsigned kTileWords = 8192;

// kPairs: the channel pairs when they are 64 (128 channels: qb = 4, and the output loops' divisions by qb and
// qb * BITS become shifts), 0 for any other count (the arguments pairs and qb).
template <DType T, unsigned BITS, unsigned kPairs>
__global__ void __launch_bounds__(256, 4) encode_channel_tile(const void* in, unsigned pairs_arg, unsigned qb_arg, unsigned gpr, DType sd,
                                                              Sections s) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  static_assert(sizeof(typename group_cuda::RawPair<T>::type) == 4, "2-byte input dtypes");
  const unsigned pairs = kPairs != 0 ? kPairs : pairs_arg, qb = kPairs != 0 ? group_cuda::kThreads / kPairs : qb_arg;
  __shared__ uint4 tile4[kTileWords / 4];
  std::uint32_t* tile = reinterpret_cast<std::uint32_t*>(tile4);
  const unsigned C = 2 * pairs, q0 = blockIdx.x * qb;
  const uint4* src = reinterpret_cast<const uint4*>(in) + static_cast<std::int64_t>(q0) * 4 * C;  // 32 C 2-byte values = 4 C uint4 per q
  cuda_async::stage16(tile4, src, qb * 4 * C);  // all of a thread's copies in flight at once (async_copy.cuh)
  __syncthreads();
  const unsigned j = threadIdx.x / pairs, p = threadIdx.x - j * pairs;
  const bool active = j < qb;
  std::uint32_t raw[32];
  if (active) {
#pragma unroll
    for (int i = 0; i < 32; ++i) raw[i] = tile[(j * 32 + i) * pairs + p];
  }
  __syncthreads();  // the tile now holds the outputs: words [c][j][BITS], then scales [c][j] and mins [c][j]
  float* scales = reinterpret_cast<float*>(tile + C * qb * BITS);
  float* mins = scales + C * qb;
  if (active) {
    const auto put = [&](unsigned c, const GroupCodes<BITS>& r) {
#pragma unroll
      for (unsigned k = 0; k < BITS; ++k) tile[(c * qb + j) * BITS + k] = r.words[k];
      scales[c * qb + j] = r.scale;
      mins[c * qb + j] = r.mn;
    };
    float2 mn, mx;
    pair_min_max<T>(raw, mn, mx);
    put(2 * p, group_codes_in_range<BITS>([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).x; }, mn.x, mx.x, sd));
    put(2 * p + 1, group_codes_in_range<BITS>([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).y; }, mn.y, mx.y, sd));
  }
  __syncthreads();
  const unsigned h = q0 / gpr, gi0 = q0 - h * gpr, run = qb * BITS;
  const std::int64_t first_group = static_cast<std::int64_t>(h) * C * gpr + gi0;  // channel c's first: + c * gpr
  std::uint32_t* codes = reinterpret_cast<std::uint32_t*>(s.codes);
  for (unsigned w = threadIdx.x; w < C * run; w += blockDim.x) {
    const unsigned c = w / run;
    codes[(first_group + static_cast<std::int64_t>(c) * gpr) * BITS + (w - c * run)] = tile[w];
  }
  for (unsigned e = threadIdx.x; e < C * qb; e += blockDim.x) {
    const unsigned c = e / qb;
    const std::int64_t gidx = first_group + static_cast<std::int64_t>(c) * gpr + (e - c * qb);
    group_cuda::store_scalar(s.scales, gidx, sd, scales[e]);
    group_cuda::store_scalar(s.mins, gidx, sd, mins[e]);
  }
}

template <DType O, unsigned BITS>
__global__ void decode_channel_fast(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, ChannelPairs ix,
                                    unsigned threads, DType sd, void* out) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= threads) return;
  std::int64_t first, ga, gb;
  ix.of(t, first, ga, gb);
  float a[32], b[32];
  decode_group_to_registers<BITS>(codes, scales, mins, sd, ga, a);
  decode_group_to_registers<BITS>(codes, scales, mins, sd, gb, b);
#pragma unroll
  for (int i = 0; i < 32; ++i) group_cuda::store2<O>(out, first + static_cast<std::int64_t>(i) * ix.channels, a[i], b[i]);
}

// W consecutive code words from word `first` of the codes section, in 16-byte loads where W is a multiple of 4 (then
// `first` must be too), else 8-byte loads where W is even, else one word.
template <unsigned W>
__device__ __forceinline__ void load_code_words(const std::uint8_t* codes, std::int64_t first, std::uint32_t (&w)[W]) {
  if constexpr (W % 4 == 0) {
    const uint4* src = reinterpret_cast<const uint4*>(codes) + first / 4;
#pragma unroll
    for (unsigned k = 0; k < W / 4; ++k) {
      const uint4 x = src[k];
      w[4 * k] = x.x, w[4 * k + 1] = x.y, w[4 * k + 2] = x.z, w[4 * k + 3] = x.w;
    }
  } else if constexpr (W % 2 == 0) {
    const uint2* src = reinterpret_cast<const uint2*>(codes) + first / 2;
#pragma unroll
    for (unsigned k = 0; k < W / 2; ++k) {
      const uint2 x = src[k];
      w[2 * k] = x.x, w[2 * k + 1] = x.y;
    }
  } else {
#pragma unroll
    for (unsigned k = 0; k < W; ++k) w[k] = reinterpret_cast<const std::uint32_t*>(codes)[first + k];
  }
}

// Group r of a channel pair (its codes at bits 32 r BITS .. of the words wa / wb) decoded through fp32 (decode_value's
// operations) and stored as O: token i's pair at element first + i * channels.
template <DType O, unsigned BITS, unsigned W>
__device__ __forceinline__ void store_group_pair(const std::uint32_t (&wa)[W], const std::uint32_t (&wb)[W], unsigned r, float sa, float ma,
                                                 float sb, float mb, void* out, std::int64_t first, unsigned channels) {
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) {
    const unsigned bit = r * 32 * BITS + i * BITS, mask = (1u << BITS) - 1u;
    const unsigned qa = (wa[bit / 32] >> (bit % 32)) & mask, qb = (wb[bit / 32] >> (bit % 32)) & mask;
    group_cuda::store2<O>(out, first + static_cast<std::int64_t>(i) * channels, decoded_value(qa, sa, ma), decoded_value(qb, sb, mb));
  }
}

// Axis channel, decode, kRunGroups consecutive groups of a channel pair per thread (gpr a multiple of kRunGroups,
// BITS <= 4, 16-byte aligned codes): each channel's run of kRunGroups groups is kRunGroups * BITS contiguous code
// words (whole 32-byte sectors at 2 bits) and kRunGroups consecutive scales and mins, all loaded before the first
// store, where decode_channel_fast's thread loads one group of each channel (8 bytes of a sector, the rest read
// again by another block). Threads t = q4 * pairs + p: channel pair p of row groups 4 q4 .. 4 q4 + 3 (one head's).
constexpr unsigned kRunGroups = 4;

template <DType O, unsigned BITS>
__global__ void __launch_bounds__(256) decode_channel_runs(const std::uint8_t* codes, const std::uint8_t* scales,
                                                           const std::uint8_t* mins, ChannelPairs ix, unsigned threads, DType sd,
                                                           void* out) {
  static_assert(BITS <= 4, "at most 16 code words per channel in registers");
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= threads) return;
  const unsigned q4 = ix.by_pairs.div(t), p = t - q4 * ix.pairs;
  const unsigned q = q4 * kRunGroups, h = ix.by_gpr.div(q), gi = q - h * ix.gpr;  // first row group of the run
  const std::int64_t first = static_cast<std::int64_t>(q) * 32 * ix.channels + 2 * p;
  const std::int64_t ga = (static_cast<std::int64_t>(h) * ix.channels + 2 * p) * ix.gpr + gi, gb = ga + ix.gpr;
  constexpr unsigned W = kRunGroups * BITS;  // code words of a channel's run (a multiple of 4)
  std::uint32_t wa[W], wb[W];
  load_code_words(codes, ga * BITS, wa);
  load_code_words(codes, gb * BITS, wb);
  float sa[kRunGroups], ma[kRunGroups], sb[kRunGroups], mb[kRunGroups];
#pragma unroll
  for (unsigned r = 0; r < kRunGroups; ++r) {
    sa[r] = group_cuda::load_scalar(scales, ga + r, sd), ma[r] = group_cuda::load_scalar(mins, ga + r, sd);
    sb[r] = group_cuda::load_scalar(scales, gb + r, sd), mb[r] = group_cuda::load_scalar(mins, gb + r, sd);
  }
#pragma unroll
  for (unsigned r = 0; r < kRunGroups; ++r)
    store_group_pair<O, BITS>(wa, wb, r, sa[r], ma[r], sb[r], mb[r], out, first + static_cast<std::int64_t>(r) * 32 * ix.channels, ix.channels);
}

// --- fp16 output from fp16 metadata: the decode in fused fp16 multiply-adds (uniform_half_decode.h) -------------
// Where half_decode_exact holds for a group, RN16(fma(q, s, m)) (one fma.rn.f16x2 per two values) is the reference's
// fp16 value; the codes reach it as the fp16 pair (1024 + q_lo, 1024 + q_hi) = 0x6400 | q per half (exact for
// q < 1024), minus 1024 (exact). Per two values: a shift, a three-input logic op, a subtraction and the fma, against
// about 13 instructions through fp32 (two code extractions and conversions, two multiplies, two adds, a conversion
// pair). A group where the condition fails is decoded through fp32 as the other kernels do.

// ((x >> sh) & mask) | 0x64006400 as one lop3: the fp16 pair 1024 + code per half.
__device__ __forceinline__ std::uint32_t biased_half_pair(std::uint32_t x, unsigned sh, std::uint32_t mask) {
  return group_cuda::biased_code_pair(x, sh, mask, 0x64006400u);
}
// A biased pair (biased_half_pair) decoded: (q - 0) s + m per half, one rounding to fp16.
__device__ __forceinline__ std::uint32_t fused_half_pair(std::uint32_t biased, __half2 s, __half2 m) {
  const __half2 q = __hsub2(*reinterpret_cast<const __half2*>(&biased), __half2half2(__ushort_as_half(0x6400)));
  const __half2 r = __hfma2(q, s, m);
  return *reinterpret_cast<const std::uint32_t*>(&r);
}
__device__ __forceinline__ __half2 half_pair(std::uint16_t lo, std::uint16_t hi) {
  return __halves2half2(__ushort_as_half(lo), __ushort_as_half(hi));
}

// Axis channel, fp16 output from fp16 metadata: one group of a channel pair per thread (the threads of
// decode_channel_fast); the pair (channel 2p, 2p + 1) of a token is one fused_half_pair of the two channels' code
// words joined by a byte permute (low halves: the tokens of a word's first 16 bits; high halves: the rest), stored as
// one 4-byte word (a warp writes 128 contiguous bytes of a token row). kC: the channel count when it is 128 (store
// offsets become immediates), 0 for any other (ix.channels). Measured on the H200 (kivi-2 keys, [4, 32768, 128],
// Nsight Compute): 13.3-13.7 us per layer, against 14.3-15.0 with 4 groups per thread as decode_channel_runs (21% of
// the warp slots occupied there, 60% here) and 13.6-14.1 with 2; decode_channel_runs itself (fp32) 14.9.
template <unsigned BITS, unsigned kC>
__global__ void __launch_bounds__(256) decode_channel_half(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins,
                                                           ChannelPairs ix, unsigned threads, __half* out) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= threads) return;
  std::int64_t first, ga, gb;
  ix.of(t, first, ga, gb);
  const unsigned C = kC != 0 ? kC : ix.channels;
  std::uint32_t wa[BITS], wb[BITS];  // the group's code words of each channel
  load_code_words(codes, ga * BITS, wa);
  load_code_words(codes, gb * BITS, wb);
  const auto* sc = reinterpret_cast<const std::uint16_t*>(scales);
  const auto* mc = reinterpret_cast<const std::uint16_t*>(mins);
  const std::uint16_t sa = sc[ga], ma = mc[ga], sb = sc[gb], mb = mc[gb];
  constexpr unsigned top = uniform_format::max_code(BITS), per_half = 16 / BITS;
  if (uniform_format::half_decode_exact(sa, ma, top) && uniform_format::half_decode_exact(sb, mb, top)) {
    constexpr std::uint32_t mask = top * 0x00010001u;
    const __half2 s2 = half_pair(sa, sb), m2 = half_pair(ma, mb);
    std::uint32_t* o = reinterpret_cast<std::uint32_t*>(out + first);  // the pair's fp16 values as one word per token
#pragma unroll
    for (unsigned k = 0; k < BITS; ++k) {  // word k: tokens k * 32 / BITS ..
      const std::uint32_t lo = __byte_perm(wa[k], wb[k], 0x5410), hi = __byte_perm(wa[k], wb[k], 0x7632);
#pragma unroll
      for (unsigned j = 0; j < 2 * per_half; ++j) {
        const unsigned i = k * 2 * per_half + j;  // token of the group
        o[static_cast<std::int64_t>(i) * (C / 2)] = fused_half_pair(biased_half_pair(j < per_half ? lo : hi, (j % per_half) * BITS, mask), s2, m2);
      }
    }
  } else {
    const auto f = [](std::uint16_t b) { return __half2float(__ushort_as_half(b)); };
    store_group_pair<DType::f16, BITS>(wa, wb, 0, f(sa), f(ma), f(sb), f(mb), out, first, C);
  }
}

// One token-axis group k of encode_token_fast.
template <DType T, unsigned BITS>
__device__ __forceinline__ void encode_token_group(const void* in, std::int64_t k, DType sd, const Sections& s) {
  if constexpr (T == DType::f32) {
    float x[32];
    group_cuda::load32<T>(in, 32 * k, x);
    store_group_codes<BITS>(group_codes<BITS>([&](int i) { return x[i]; }, sd), sd, k, s);
  } else {  // the 32 values as 16 raw pairs (four 16-byte loads), widened where read
    const uint4* v = reinterpret_cast<const uint4*>(in) + 4 * k;
    std::uint32_t raw[16];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const uint4 w = v[q];
      raw[4 * q] = w.x, raw[4 * q + 1] = w.y, raw[4 * q + 2] = w.z, raw[4 * q + 3] = w.w;
    }
    const auto get = [&](int i) {
      const float2 f = group_cuda::raw2_to_float2<T>(raw[i / 2]);
      return i % 2 == 0 ? f.x : f.y;
    };
    float mn, mx;
    group_min_max<T>(raw, get, mn, mx);
    store_group_codes<BITS>(group_codes_in_range<BITS>(get, mn, mx, sd), sd, k, s);
  }
}

// Axis token, encode: one group (32 contiguous channels of a token, 16-byte loads) per thread; 64 registers so that
// 4 blocks of 256 fit an SM. Measured on an H200 (28 x 4 x 32768 x 128 fp16, kivi-2 values): 1650-1670 GB/s, against
// 1270 for the same kernel with 64-bit index division, no register bound and a rint / conversion per element, and
// 911 for four lanes per group, where the per-group work (stored range, reciprocal) is repeated by each lane.
// wait_late: GridOrder's (the first kernel of a call with Execution::after_independent_kernel).
template <DType T, unsigned BITS>
__global__ void __launch_bounds__(256, 4) encode_token_fast(const void* in, std::int64_t groups, DType sd, Sections s, bool wait_late) {
  const dependent_launch::GridOrder order(wait_late);  // launched by launch_dependent (dependent_launch.cuh)
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < groups) encode_token_group<T, BITS>(in, k, sd, s);
  order.end();
}

// Axis token, decode, warp-cooperative: four lanes per group, each decoding 8 consecutive channels from the BITS
// bytes at byte BITS * quarter of the group's run, one 16-byte store each (a warp writes 8 groups = 512 contiguous
// bytes of fp16). Measured: 2340-2380 GB/s against 1534 with 64-bit index division (four per 8 values). A thread
// takes kTokenItems lanes a block's width apart, all loaded before the first store.
constexpr int kTokenItems = 4;

// The 8 codes of a token-axis lane (lane l: quarter l % 4 of group l / 4): BITS bytes at byte BITS * (l % 4) of the
// group's run.
template <unsigned BITS>
__device__ __forceinline__ std::uint64_t lane_codes(const std::uint8_t* codes, std::int64_t lane) {
  const std::uint8_t* run = codes + 4 * BITS * (lane >> 2) + BITS * static_cast<unsigned>(lane & 3);
  if constexpr (BITS == 1) return *run;
  else if constexpr (BITS == 2) return *reinterpret_cast<const std::uint16_t*>(run);
  else if constexpr (BITS == 4) return *reinterpret_cast<const std::uint32_t*>(run);
  else
    return static_cast<std::uint64_t>(reinterpret_cast<const std::uint32_t*>(run)[0]) |
           (static_cast<std::uint64_t>(reinterpret_cast<const std::uint32_t*>(run)[1]) << 32);
}

// A token-axis lane's 8 codes decoded through fp32 (decode_value's operations) and stored as O at element 8 lane.
template <DType O, unsigned BITS>
__device__ __forceinline__ void store_lane(std::uint64_t bits, float scale, float mn, void* out, std::int64_t lane) {
  float x[8];
#pragma unroll
  for (unsigned i = 0; i < 8; ++i) x[i] = decoded_value(static_cast<unsigned>(bits >> (BITS * i)) & ((1u << BITS) - 1u), scale, mn);
  group_cuda::store8<O>(out, 8 * lane, x);
}

template <DType O, unsigned BITS>
__global__ void decode_token_fast(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, std::int64_t lanes,
                                  DType sd, void* out) {
  const std::int64_t base = static_cast<std::int64_t>(blockIdx.x) * blockDim.x * kTokenItems + threadIdx.x;
  float scale[kTokenItems], mn[kTokenItems];
  std::uint64_t bits[kTokenItems];
#pragma unroll
  for (int it = 0; it < kTokenItems; ++it) {
    const std::int64_t lane_global = base + static_cast<std::int64_t>(it) * blockDim.x;
    if (lane_global >= lanes) break;
    scale[it] = group_cuda::load_scalar(scales, lane_global >> 2, sd), mn[it] = group_cuda::load_scalar(mins, lane_global >> 2, sd);
    bits[it] = lane_codes<BITS>(codes, lane_global);
  }
#pragma unroll
  for (int it = 0; it < kTokenItems; ++it) {
    const std::int64_t lane_global = base + static_cast<std::int64_t>(it) * blockDim.x;
    if (lane_global >= lanes) break;
    store_lane<O, BITS>(bits[it], scale[it], mn[it], out, lane_global);
  }
}

// decode_token_fast for fp16 output and fp16 metadata (same lanes, same loads): a lane's 8 codes are spread so
// that codes 2j and 2j + 1 sit 16 bits apart (per 16-bit chunk of the codes, the odd fields shifted up by 16 - BITS),
// then each pair is one fused_half_pair, and the 8 values one 16-byte store.
template <unsigned BITS>
__host__ __device__ constexpr std::uint32_t even_fields() {  // the even-numbered BITS-bit fields of a 16-bit chunk
  std::uint32_t m = 0;
  for (unsigned f = 0; f < 16 / BITS; f += 2) m |= ((1u << BITS) - 1u) << (f * BITS);
  return m;
}

template <unsigned BITS>
__global__ void decode_token_half(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, std::int64_t lanes,
                                  __half* out, bool wait_late) {
  const dependent_launch::GridOrder order(wait_late);  // launched by launch_dependent (dependent_launch.cuh)
  constexpr unsigned top = uniform_format::max_code(BITS);
  constexpr unsigned fields = 16 / BITS < 8 ? 16 / BITS : 8;  // codes per 16-bit chunk that belong to the lane
  constexpr std::uint32_t even = even_fields<BITS>(), odd = 0xffffu & ~even, mask = top * 0x00010001u;
  const std::int64_t base = static_cast<std::int64_t>(blockIdx.x) * blockDim.x * kTokenItems + threadIdx.x;
  const auto* sc = reinterpret_cast<const std::uint16_t*>(scales);
  const auto* mc = reinterpret_cast<const std::uint16_t*>(mins);
  std::uint16_t sb[kTokenItems], mb[kTokenItems];
  std::uint64_t bits[kTokenItems];
#pragma unroll
  for (int it = 0; it < kTokenItems; ++it) {
    const std::int64_t lane_global = base + static_cast<std::int64_t>(it) * blockDim.x;
    if (lane_global >= lanes) break;
    sb[it] = sc[lane_global >> 2], mb[it] = mc[lane_global >> 2];
    bits[it] = lane_codes<BITS>(codes, lane_global);
  }
#pragma unroll
  for (int it = 0; it < kTokenItems; ++it) {
    const std::int64_t lane_global = base + static_cast<std::int64_t>(it) * blockDim.x;
    if (lane_global >= lanes) break;
    if (uniform_format::half_decode_exact(sb[it], mb[it], top)) {
      const __half2 s2 = half_pair(sb[it], sb[it]), m2 = half_pair(mb[it], mb[it]);
      std::uint32_t w[4];
#pragma unroll
      for (unsigned chunk = 0; chunk < 8 / fields; ++chunk) {
        const std::uint32_t v = static_cast<std::uint32_t>(bits[it] >> (16 * chunk)) & 0xffffu;
        const std::uint32_t y = (v & even) | ((v & odd) << (16 - BITS));
#pragma unroll
        for (unsigned j = 0; j < fields / 2; ++j) w[chunk * (fields / 2) + j] = fused_half_pair(biased_half_pair(y, 2 * j * BITS, mask), s2, m2);
      }
      reinterpret_cast<uint4*>(out)[lane_global] = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
      store_lane<DType::f16, BITS>(bits[it], __half2float(__ushort_as_half(sb[it])), __half2float(__ushort_as_half(mb[it])), out, lane_global);
    }
  }
  order.end();
}

// Whether the fast kernels apply: G = 32, bits 1/2/4/8, whole word-aligned groups, aligned buffers, and on the
// channel axis an even channel count (channel pairs) and 32-bit thread indices.
bool fast_path(const Config& c, const GroupGrid& g, const void* values, const void* bytes, DType values_dtype) {
  if (c.group != 32 || !group_format::release_bits_ok(c.bits) || !group_format::word_aligned_groups(c.layout, g, c.bits)) return false;
  if (!group_cuda::aligned(bytes, 4)) return false;
  if (c.axis == GroupAxis::channel)
    return g.rows % 2 == 0 && ChannelPairs::fits(g) && group_cuda::aligned(values, 2 * static_cast<unsigned>(dtype_size(values_dtype)));
  return group_cuda::aligned(values, 16);
}

// Row groups per block of encode_channel_tile, or 0 where it does not apply (fp32 input, more than 256 channel
// pairs, an input not 16-byte aligned, or a row-group count per head that qb does not divide).
unsigned tile_row_groups(const GroupGrid& g, const void* in, DType in_dtype) {
  if (in_dtype == DType::f32 || g.rows / 2 > group_cuda::kThreads || !group_cuda::aligned(in, 16)) return 0;
  const unsigned qb = static_cast<unsigned>(group_cuda::kThreads / (g.rows / 2));
  return g.groups_per_row() % qb == 0 ? qb : 0;
}

// Layout fragment's sections (fragment_permute.h): the codes, then scales and mins.
fragment_permute::BlockSections fragment_sections(const Config& c, const GroupGrid& g) {
  return {g, group_format::fragment_form(g, c.bits), static_cast<int>(dtype_size(c.scale_dtype)), 2};
}

Config dense_config(const Config& c) {
  Config d = c;
  d.layout = CodeLayout::dense;
  return d;
}

// Calls f(std::integral_constant<unsigned, bits>) for bits in {1, 2, 4, 8}.
template <class F>
void dispatch_bits(unsigned bits, F&& f) {
  switch (bits) {
    case 1: f(std::integral_constant<unsigned, 1>{}); break;
    case 2: f(std::integral_constant<unsigned, 2>{}); break;
    case 4: f(std::integral_constant<unsigned, 4>{}); break;
    default: f(std::integral_constant<unsigned, 8>{}); break;
  }
}

}  // namespace

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream,
            bool after_independent_kernel) {
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
  if (c.layout == CodeLayout::fragment) {
    // Layout fragment: coded in layout dense by the kernels below (the fast ones where they apply), then the codes
    // section permuted from a copy (2 bits per element: a pass over an eighth of fp16 input's bytes), and the scales
    // and mins where the layout stores them group-major (group_format::group_major_meta: channel-axis grids).
    encode(dense_config(c), in, in_dtype, shape, out, stream, after_independent_kernel);  // its first kernel: this call's
    fragment_permute_cuda::dense_to_fragment(fragment_sections(c, g), out, stream, "uniform encode (fragment permutation)");
    return;
  }
  const Sections s = uniform_format::sections(c.layout, g, c.bits, c.scale_dtype, out);
  const bool word_runs = group_format::word_aligned_groups(c.layout, g, c.bits) && group_cuda::aligned4(out);
  auto* st = static_cast<cudaStream_t>(stream);
  if (fast_path(c, g, in, out, in_dtype)) {
    const unsigned qb = c.axis == GroupAxis::channel ? tile_row_groups(g, in, in_dtype) : 0;
    group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
      constexpr DType T = decltype(tag)::value;
      dispatch_bits(c.bits, [&](auto bits_tag) {
        constexpr unsigned B = decltype(bits_tag)::value;
        if (c.axis == GroupAxis::token) {
          // Late wait where the caller promised independence (Execution::after_independent_kernel): this kernel touches
          // only `in` and `out` (GridOrder).
          dependent_launch::launch_dependent<encode_token_fast<T, B>>(group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st, in,
                                             g.group_count(), c.scale_dtype, s, after_independent_kernel);
          if (after_independent_kernel) dependent_launch::count_late_wait();
        } else if (qb != 0) {
          if constexpr (T != DType::f32) {  // tile_row_groups is 0 for fp32 input: the kernel is built for 2-byte input only
            const unsigned blocks = static_cast<unsigned>(g.heads * g.groups_per_row() / qb);
            const auto pairs = static_cast<unsigned>(g.rows / 2), gpr = static_cast<unsigned>(g.groups_per_row());
            // 128 channels as a constant at 1 and 2 bits (at 4 and 8 the constant version spills a few registers)
            constexpr unsigned kConstPairs = B <= 2 ? 64 : 0;
            if (kConstPairs != 0 && pairs == kConstPairs)
              dependent_launch::launch_dependent<encode_channel_tile<T, B, kConstPairs>>(blocks, group_cuda::kThreads, 0, st, in, pairs, qb, gpr,
                                                 c.scale_dtype, s);
            else
              dependent_launch::launch_dependent<encode_channel_tile<T, B, 0>>(blocks, group_cuda::kThreads, 0, st, in, pairs, qb, gpr, c.scale_dtype, s);
          }
        } else {
          const auto threads = static_cast<unsigned>(ChannelPairs::threads(g));
          encode_channel_fast<T, B><<<group_cuda::blocks_for(threads), group_cuda::kThreads, 0, st>>>(in, ChannelPairs(g), threads,
                                                                                                     c.scale_dtype, s);
        }
      });
    });
    check_launch("uniform encode (fast path)");
    return;
  }
  group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    group_cuda::dispatch_bool(word_runs, [&](auto runs) {
      encode_groups<T, decltype(runs)::value><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, g, c.axis, c.bits, c.scale_dtype, c.layout, s);
    });
    if (!word_runs) {
      check_launch("uniform encode (statistics)");
      const group_cuda::ByteMap map = group_cuda::code_byte_map(c.layout, g, c.axis, c.bits);
      encode_code_bytes<T><<<group_cuda::blocks_for(map.threads()), group_cuda::kThreads, 0, st>>>(
          in, g, c.bits, c.scale_dtype, c.layout, s, map);
    }
  });
  check_launch("uniform encode");
}

void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream,
            bool after_independent_kernel) {
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
  if (c.layout == CodeLayout::fragment) {
    // Layout fragment: the codes permuted into a copy of the bytes in layout dense (the metadata copied as it is, or
    // put back in the canonical order where the layout stores it group-major), decoded there by the kernels below;
    // all tail: dense's bytes as they are.
    if (group_format::fragment_all_tail(g))
      return decode(dense_config(c), in, shape, out, out_dtype, stream, after_independent_kernel);
    // (Otherwise the first kernel is the permutation, into a buffer allocated here: it waits first.)
    const std::size_t total = uniform_format::total_bytes(CodeLayout::dense, g, c.bits, c.scale_dtype);
    DeviceBuffer dense(total, stream);
    fragment_permute_cuda::fragment_to_dense(fragment_sections(c, g), in, dense.as<std::uint8_t>(), total, stream,
                                             "uniform decode (fragment permutation)");
    decode(dense_config(c), dense.as<std::uint8_t>(), shape, out, out_dtype, stream);
    return;
  }
  const auto sections = uniform_format::sections(c.layout, g, c.bits, c.scale_dtype, in);
  const std::uint8_t* scales = sections.scales;
  const std::uint8_t* mins = sections.mins;
  const bool word_runs = group_format::word_aligned_groups(c.layout, g, c.bits) && group_cuda::aligned4(in);
  auto* st = static_cast<cudaStream_t>(stream);
  if (fast_path(c, g, out, in, out_dtype)) {
    group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
      constexpr DType O = decltype(tag)::value;
      dispatch_bits(c.bits, [&](auto bits_tag) {
        constexpr unsigned B = decltype(bits_tag)::value;
        if (c.axis == GroupAxis::channel) {
          const auto threads = static_cast<unsigned>(ChannelPairs::threads(g));
          if constexpr (O == DType::f16) {
            if (c.scale_dtype == DType::f16 && group_cuda::aligned(in, 4 * (B < 4 ? B : 4))) {  // fused fp16 decode (uniform_half_decode.h)
              auto* o = static_cast<__half*>(out);
              if (g.rows == 128)
                dependent_launch::launch_dependent<decode_channel_half<B, 128>>(group_cuda::blocks_for(threads), group_cuda::kThreads, 0, st, in,
                                                   scales, mins, ChannelPairs(g), threads, o);
              else
                dependent_launch::launch_dependent<decode_channel_half<B, 0>>(group_cuda::blocks_for(threads), group_cuda::kThreads, 0, st, in,
                                                   scales, mins, ChannelPairs(g), threads, o);
              return;
            }
          }
          if (B <= 4 && g.groups_per_row() % kRunGroups == 0 && group_cuda::aligned(in, 16)) {
            if constexpr (B <= 4)
              decode_channel_runs<O, B><<<group_cuda::blocks_for(threads / kRunGroups), group_cuda::kThreads, 0, st>>>(
                  in, scales, mins, ChannelPairs(g), threads / kRunGroups, c.scale_dtype, out);
          } else {
            decode_channel_fast<O, B><<<group_cuda::blocks_for(threads), group_cuda::kThreads, 0, st>>>(in, scales, mins, ChannelPairs(g),
                                                                                                       threads, c.scale_dtype, out);
          }
        } else {
          const std::int64_t lanes = 4 * g.group_count();  // four lanes per group
          if constexpr (O == DType::f16) {
            if (c.scale_dtype == DType::f16) {  // fused fp16 decode (uniform_half_decode.h)
              // Late wait as encode_token_fast's: this kernel touches only `in` and `out`.
              dependent_launch::launch_dependent<decode_token_half<B>>(group_cuda::blocks_for((lanes + kTokenItems - 1) / kTokenItems),
                                                 group_cuda::kThreads, 0, st, in, scales, mins, lanes, static_cast<__half*>(out),
                                                 after_independent_kernel);
              if (after_independent_kernel) dependent_launch::count_late_wait();
              return;
            }
          }
          decode_token_fast<O, B><<<group_cuda::blocks_for((lanes + kTokenItems - 1) / kTokenItems), group_cuda::kThreads, 0, st>>>(
              in, scales, mins, lanes, c.scale_dtype, out);
        }
      });
    });
    check_launch("uniform decode (fast path)");
    return;
  }
  group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
    constexpr DType O = decltype(tag)::value;
    group_cuda::dispatch_bool(word_runs, [&](auto runs) {
      decode_groups<O, decltype(runs)::value><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, scales, mins, g, c.axis, c.bits, c.scale_dtype, c.layout, out);
    });
  });
  check_launch("uniform decode");
}

}  // namespace vidkv::uniform_cuda
