// uniform on CUDA (uniform_cuda.h): one thread per group; bytes bit-identical to the CPU reference (uniform.cpp).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/async_copy.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/uniform/uniform_cuda.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/cuda/group_cuda_io.cuh"

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
// The group's 32 values live in registers, codes are assembled in BITS words and stored whole. Every group's code
// run fills whole words there (word_aligned_groups with length % 32 == 0), so in both layouts group g's words are
// g * BITS .. g * BITS + BITS - 1 of the codes section (dense: the stream index of its first element is 32 g; release:
// rows of length * BITS / 32 words): no division finds them. Same operations per element as the reference
// (stored_group, encode_value, decode_value), so the same bytes and floats.

// Adding kRoundMagic = 1.5 * 2^23 to an fp32 v in [0, 2^22) leaves rint(v) (round half to even, the reference's
// round_half_even) in the low 22 bits of the sum, exactly: the sum lies in [2^23 + 2^22, 2^24), where the spacing
// of fp32 is 1. That replaces a round and a float-to-integer conversion per element.
constexpr float kRoundMagic = 12582912.0f;

// uniform_format::encode_value with a multiplication by the reciprocal instead of the division, and the division
// only where the two could give different codes (the argument of uniform_avx512.cpp's codes_fast): with u = 2^-24,
// d = x - mn, q = fl(d / s) and q' = fl(d * fl(1 / s)), |q - q'| <= (3u + u^2) |d / s|; clamping is 1-Lipschitz and
// rounding jumps only at k + 0.5, so below the top code (|d / s| < top + 1) the codes agree unless clamp(q') lies
// within eps = 4u (top + 1) of some k + 0.5; beyond the clamps both give top or 0. A group with an element within
// eps of a boundary (a few in a million) is coded again by encode_value itself; so is every group whose reciprocal
// exceeds 2^100 (an fp32 scale below 2^-100), where the bound does not hold. Scale 0: reciprocal 0, code 0.
struct FastCoder {
  float mn, reciprocal, top, limit;
  bool exact_only;

  __device__ FastCoder(const uniform_format::StoredGroup& r, unsigned b)
      : mn(r.mn), reciprocal(r.scale > 0.0f ? 1.0f / r.scale : 0.0f)  /* IEEE division: fl(1 / s) */,
        top(static_cast<float>(uniform_format::max_code(b))), limit(0.5f - 4.0f * 0x1p-24f * (top + 1.0f)),
        exact_only(reciprocal >= 0x1p100f) {}

  // The code of x through the reciprocal; sets `near` when x lies too close to a boundary for it to be trusted.
  __device__ unsigned code(float x, bool& near) const {
    const float v = fminf(fmaxf(__fmul_rn(__fsub_rn(x, mn), reciprocal), 0.0f), top);
    const float t = __fadd_rn(v, kRoundMagic);
    near |= fabsf(__fsub_rn(v, __fsub_rn(t, kRoundMagic))) > limit;
    return __float_as_uint(t) & 0xffu;  // rint(v) <= top <= 255
  }
};

// The float value of a code q < 2^23 without a conversion instruction: the fp32 with exponent 2^23 and q in its
// mantissa, minus 2^23 (exact).
__device__ __forceinline__ float code_float(unsigned q) { return __fsub_rn(__uint_as_float(0x4B000000u | q), 8388608.0f); }

// min and max of 32 values with the reference's results bit for bit: a tree of fminf / fmaxf gives the same value
// as its ordered scan (x < mn ? x : mn) except for the sign of a zero (-0 == +0 keeps whichever came first there),
// so a zero result is redone in order. The tree's depth is 5 instead of the scan's 31 dependent steps.
template <class Get>
__device__ inline void ordered_min_max(Get get, float& mn, float& mx) {
  float a[16], b[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const float x = get(2 * i), y = get(2 * i + 1);
    a[i] = fminf(x, y);
    b[i] = fmaxf(x, y);
  }
  // Written out per level: a loop over the levels is not unrolled and would move a and b to local memory.
#define VIDKV_MIN_MAX_LEVEL(W) _Pragma("unroll") for (int i = 0; i < W; ++i) { a[i] = fminf(a[i], a[i + W]); b[i] = fmaxf(b[i], b[i + W]); }
  VIDKV_MIN_MAX_LEVEL(8) VIDKV_MIN_MAX_LEVEL(4) VIDKV_MIN_MAX_LEVEL(2) VIDKV_MIN_MAX_LEVEL(1)
#undef VIDKV_MIN_MAX_LEVEL
  mn = a[0];
  mx = b[0];
  if (mn == 0.0f || mx == 0.0f) {
    mn = mx = get(0);
#pragma unroll  // a run-time index into the caller's register array would move it to local memory
    for (int i = 1; i < 32; ++i) {
      const float x = get(i);
      mn = x < mn ? x : mn;
      mx = x > mx ? x : mx;
    }
  }
}

// The stored scale and min and the code words of one group of 32 values get(0..31).
template <unsigned BITS>
struct GroupCodes {
  std::uint32_t words[BITS];
  float scale, mn;
};

template <unsigned BITS, class Get>
__device__ inline GroupCodes<BITS> group_codes(Get get, DType sd) {
  float mn, mx;
  ordered_min_max(get, mn, mx);
  const uniform_format::StoredGroup range = uniform_format::stored_group(mn, mx, static_cast<float>(uniform_format::max_code(BITS)), sd);
  const FastCoder coder(range, BITS);
  GroupCodes<BITS> r;
  r.scale = range.scale;
  r.mn = range.mn;
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) r.words[k] = 0;
  bool near = coder.exact_only;
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) r.words[(i * BITS) / 32] |= coder.code(get(i), near) << ((i * BITS) % 32);
  if (near) {  // rare: the reference's division for the whole group
#pragma unroll
    for (unsigned k = 0; k < BITS; ++k) r.words[k] = 0;
#pragma unroll
    for (unsigned i = 0; i < 32; ++i)
      r.words[(i * BITS) / 32] |= uniform_format::encode_value(get(i), range.scale, range.mn, BITS) << ((i * BITS) % 32);
  }
  return r;
}

// group_codes stored: words at word gidx * BITS, scale and min at gidx.
template <unsigned BITS, class Get>
__device__ inline void encode_group_values(Get get, DType sd, std::int64_t gidx, const Sections& s) {
  const GroupCodes<BITS> r = group_codes<BITS>(get, sd);
  group_cuda::store_scalar(s.scales, gidx, sd, r.scale);
  group_cuda::store_scalar(s.mins, gidx, sd, r.mn);
  std::uint32_t* dst = reinterpret_cast<std::uint32_t*>(s.codes) + gidx * BITS;
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) dst[k] = r.words[k];
}

template <unsigned BITS>
__device__ inline void decode_group_to_registers(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins,
                                                 DType sd, std::int64_t gidx, float (&x)[32]) {
  const float scale = group_cuda::load_scalar(scales, gidx, sd), mn = group_cuda::load_scalar(mins, gidx, sd);
  std::uint32_t words[BITS];
  const std::uint32_t* src = reinterpret_cast<const std::uint32_t*>(codes) + gidx * BITS;
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) words[k] = src[k];
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) {
    const unsigned q = (words[(i * BITS) / 32] >> ((i * BITS) % 32)) & ((1u << BITS) - 1u);
    x[i] = __fadd_rn(__fmul_rn(code_float(q), scale), mn);  // decode_value, rounded twice as the reference
  }
}

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
  encode_group_values<BITS>([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).x; }, sd, ga, s);
  encode_group_values<BITS>([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).y; }, sd, gb, s);
}

// Axis channel, fp16 / bf16 input, through shared memory: a block takes qb = 256 / pairs consecutive row groups
// q0 .. q0 + qb - 1 of one head (launched only when qb divides gpr), whose token rows are one contiguous run of
// 32 qb C elements: it is loaded with 16-byte coalesced loads, thread (j, p) encodes channel pair p of row group
// q0 + j from shared memory, and the outputs are staged there too, so that each channel's qb consecutive groups
// are written as one run of qb * BITS words, qb scales and qb mins (whole sectors instead of 8 scattered bytes per
// group). Measured on an H200 (28 x 4 x 32768 x 128 fp16, kivi-2 keys): 898 GB/s of fp16 input against 736 for
// encode_channel_fast (whose scattered per-group stores kept L2 at 56% of its throughput with DRAM at 14%).
// Shared memory of one block: the input, qb * 32 * C 2-byte values with qb * C <= 2 * 256 (32 KB), then the staged
// outputs, qb * C * (BITS + 2) words <= 5120.
constexpr unsigned kTileWords = 8192;

template <DType T, unsigned BITS>
__global__ void __launch_bounds__(256, 4) encode_channel_tile(const void* in, unsigned pairs, unsigned qb, unsigned gpr, DType sd,
                                                              Sections s) {
  static_assert(sizeof(typename group_cuda::RawPair<T>::type) == 4, "2-byte input dtypes");
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
    put(2 * p, group_codes<BITS>([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).x; }, sd));
    put(2 * p + 1, group_codes<BITS>([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).y; }, sd));
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

// Axis token, encode: one group (32 contiguous channels of a token, 16-byte loads) per thread; 64 registers so that
// 4 blocks of 256 fit an SM. Measured on an H200 (28 x 4 x 32768 x 128 fp16, kivi-2 values): 1650-1670 GB/s, against
// 1270 for the same kernel with 64-bit index division, no register bound and a rint / conversion per element, and
// 911 for four lanes per group, where the per-group work (stored range, reciprocal) is repeated by each lane.
template <DType T, unsigned BITS>
__global__ void __launch_bounds__(256, 4) encode_token_fast(const void* in, std::int64_t groups, DType sd, Sections s) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= groups) return;
  float x[32];
  group_cuda::load32<T>(in, 32 * k, x);
  encode_group_values<BITS>([&](int i) { return x[i]; }, sd, k, s);
}

// Axis token, decode, warp-cooperative: four lanes per group, each decoding 8 consecutive channels from the BITS
// bytes at byte BITS * quarter of the group's run, one 16-byte store each (a warp writes 8 groups = 512 contiguous
// bytes of fp16). Measured: 2340-2380 GB/s against 1534 with 64-bit index division (four per 8 values).
template <DType O, unsigned BITS>
__global__ void decode_token_fast(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, std::int64_t lanes,
                                  DType sd, void* out) {
  const std::int64_t lane_global = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (lane_global >= lanes) return;
  const std::int64_t k = lane_global >> 2;
  const unsigned quarter = static_cast<unsigned>(lane_global & 3);
  const float scale = group_cuda::load_scalar(scales, k, sd), mn = group_cuda::load_scalar(mins, k, sd);
  const std::uint8_t* run = codes + 4 * BITS * k + BITS * quarter;
  std::uint64_t bits;
  if constexpr (BITS == 1) bits = *run;
  else if constexpr (BITS == 2) bits = *reinterpret_cast<const std::uint16_t*>(run);
  else if constexpr (BITS == 4) bits = *reinterpret_cast<const std::uint32_t*>(run);
  else
    bits = static_cast<std::uint64_t>(reinterpret_cast<const std::uint32_t*>(run)[0]) |
           (static_cast<std::uint64_t>(reinterpret_cast<const std::uint32_t*>(run)[1]) << 32);
  float x[8];
#pragma unroll
  for (unsigned i = 0; i < 8; ++i) {
    const unsigned q = static_cast<unsigned>(bits >> (BITS * i)) & ((1u << BITS) - 1u);
    x[i] = __fadd_rn(__fmul_rn(code_float(q), scale), mn);
  }
  group_cuda::store8<O>(out, 8 * lane_global, x);
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

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream) {
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
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
          encode_token_fast<T, B><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(in, g.group_count(),
                                                                                                          c.scale_dtype, s);
        } else if (qb != 0) {
          if constexpr (T != DType::f32) {  // tile_row_groups is 0 for fp32 input: the kernel is built for 2-byte input only
            const unsigned blocks = static_cast<unsigned>(g.heads * g.groups_per_row() / qb);
            encode_channel_tile<T, B><<<blocks, group_cuda::kThreads, 0, st>>>(in, static_cast<unsigned>(g.rows / 2), qb,
                                                                               static_cast<unsigned>(g.groups_per_row()), c.scale_dtype, s);
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

void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream) {
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
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
          decode_channel_fast<O, B><<<group_cuda::blocks_for(threads), group_cuda::kThreads, 0, st>>>(in, scales, mins, ChannelPairs(g),
                                                                                                     threads, c.scale_dtype, out);
        } else {
          const std::int64_t lanes = 4 * g.group_count();  // four lanes per group
          decode_token_fast<O, B><<<group_cuda::blocks_for(lanes), group_cuda::kThreads, 0, st>>>(in, scales, mins, lanes, c.scale_dtype, out);
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
