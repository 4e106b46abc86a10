// ternary on CUDA (ternary_cuda.h): bytes bit-identical to the CPU reference (ternary.cpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "vidkv/core/cuda/dependent_launch.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/cuda/late_wait_count.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/plugins/quantizers/ternary/ternary_cuda.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/cuda/group_cuda_io.cuh"
#include "vidkv/quantization/fragment_permute.h"

namespace vidkv::ternary_cuda {

namespace {

using group_cuda::AlignedWordLoad;
using group_cuda::AlignedWordStore;
using group_format::CodeLayout;
using group_format::GroupAxis;
using group_cuda::Sections;
using group_format::GroupGrid;
using ternary_format::Packing;
using ternary_format::Reconstruction;

using ternary_format::slot_layout;  // the kernels below see base3, slots2 and release (fragment goes through slots2)

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


// --- Fast path: G = 32, whole groups (the configurations of VidKV) --------------------------------------------
// A group's 32 values live in registers (one load each); the sums are the reference's (double, in order); the trits
// go out as 2-bit slots t + 1, two words per group: straight into the codes section for slots2 / release, or into a
// scratch slot stream (canonical order, dense) that pack_base3 then turns into 5 trits per byte, reading 10 bits per
// byte instead of the input again.

__device__ inline void ternarize_group(const float (&x)[32], double gamma, Reconstruction rec, Packing p, DType sd,
                                       std::int64_t gidx, std::uint32_t* slot_words, const Sections& s) {
  double sum_abs = 0.0;
#pragma unroll
  for (int i = 0; i < 32; ++i) sum_abs += fabs(static_cast<double>(x[i]));
  const double mean_abs = sum_abs / 32.0;
  const double dead_zone = gamma * mean_abs;
  double sum_kept = 0.0;
  int kept = 0;
  std::uint32_t w[2] = {0, 0};
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    const double v = x[i];
    const int t = ternary_format::ternarize(v, dead_zone);
    w[i / 16] |= static_cast<std::uint32_t>(t + 1) << (2 * (i % 16));
    if (t != 0) {
      sum_kept += fabs(v);
      ++kept;
    }
  }
  slot_words[0] = w[0];
  slot_words[1] = w[1];
  if (ternary_format::has_scales(p, rec)) {
    const double scale = rec == Reconstruction::scaled ? (kept ? sum_kept / static_cast<double>(kept) : 0.0) : mean_abs;
    group_cuda::store_scalar(s.scales, gidx, sd, static_cast<float>(scale));
  }
  if (p == Packing::release) group_cuda::store_scalar(s.mins, gidx, sd, ternary_format::kReleaseMin);
}

// One group (of a channel pair) per thread: more warps in flight, as measured for uniform.cu on an H200.
constexpr std::int64_t kGroupsPerThread = 1;

// Axis channel: two adjacent channels and kGroupsPerThread groups of 32 tokens per thread (as uniform.cu).
template <DType T>
__global__ void encode_channel_fast(const void* in, GroupGrid g, double gamma, Reconstruction rec, Packing p, DType sd,
                                    Sections s, std::uint32_t* slots) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  const std::int64_t channels = g.rows, tokens = g.length, pairs = channels / 2, gpr = g.groups_per_row();
  const std::int64_t quads = (gpr + kGroupsPerThread - 1) / kGroupsPerThread;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.heads * quads * pairs) return;
  const std::int64_t c0 = 2 * (t % pairs), quad = (t / pairs) % quads, h = t / (pairs * quads);
  const CodeLayout layout = p == Packing::release ? CodeLayout::release : CodeLayout::dense;
  for (std::int64_t gi = quad * kGroupsPerThread; gi < gpr && gi < (quad + 1) * kGroupsPerThread; ++gi) {
    float a[32], b[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const float2 v = group_cuda::load2<T>(in, (h * tokens + gi * 32 + i) * channels + c0);
      a[i] = v.x;
      b[i] = v.y;
    }
    ternarize_group(a, gamma, rec, p, sd, g.group_index(h, c0, gi), slots + group_format::code_word(layout, g, 2, h, c0, gi * 32), s);
    ternarize_group(b, gamma, rec, p, sd, g.group_index(h, c0 + 1, gi), slots + group_format::code_word(layout, g, 2, h, c0 + 1, gi * 32), s);
  }
}

// Axis channel, magnitude-free reconstruction, fp16 / bf16 input, a multiple of 16 channels: ternarize_group's
// results for two channels' groups at once, with fewer operations, each warp on its own (as uniform.cu's
// encode_channel_warp).
//  * Work split: a warp takes 8 channel pairs of 4 consecutive row groups of one head (128 tokens); lane l codes
//    channel pair l % 8 of row group l / 8 from its 32 pairs loaded straight into registers (per token, 8 lanes read
//    32 contiguous bytes). A channel's 4 consecutive groups have 8 contiguous slot words (32 bytes, in the dense
//    stream and the release rows alike), so each lane stores a group's two words as one 8-byte store and a warp's
//    stores fill whole sectors, where encode_channel_fast's lanes each wrote 8 bytes of a different sector. Row
//    groups past the head's last leave their lanes idle. Warp w: slice w % slices, then row quad, then head.
//  * The sum of |x| in double: for fp16 input as four interleaved partial sums added at the end: each |x| is an
//    integer multiple of 2^-24 below 2^16, so every partial sum of at most 32 of them is a multiple of 2^-24 below
//    2^21 (at most 45 significant bits, within double's 53): all are exact, and any order gives the reference's
//    in-order double. bf16 input adds in order, as the reference.
//  * The trits by packed 2-byte compares of both channels' values against dz = the largest value of the input
//    dtype that is <= the dead zone (rounded down to fp32, then to the dtype: the same as rounding down once): for v
//    of that dtype, v > dead_zone <=> v > dz (if v > dz and the dead zone is not representable, v is at least the
//    next value above dz, which exceeds it), and v < -dead_zone <=> -v > dead_zone <=> v < -dz (negation is
//    exact); a NaN value or dead zone gives 0 both ways, as the reference's double compares.
// The reference converts each value to double twice and compares in double; here once, and no double compare.
template <DType T>
__global__ void __launch_bounds__(256, 4) encode_channel_warp(const void* in, group_cuda::Divider by_slices, group_cuda::Divider by_quads,
                                                              GroupGrid g, unsigned warps, double gamma, Packing p, DType sd, Sections s,
                                                              std::uint32_t* slots) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  static_assert(T != DType::f32, "2-byte input dtypes");
  using P = std::conditional_t<T == DType::f16, __half2, __nv_bfloat162>;
  const unsigned warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (warp >= warps) return;
  const unsigned hq = by_slices.div(warp), slice = warp - hq * by_slices.d, h = by_quads.div(hq), quad = hq - h * by_quads.d;
  const auto gpr = static_cast<unsigned>(g.groups_per_row()), channels = static_cast<unsigned>(g.rows);
  const unsigned gi = 4 * quad + lane / 8, c0 = 2 * (8 * slice + lane % 8);
  if (gi >= gpr) return;
  const std::uint32_t* src = reinterpret_cast<const std::uint32_t*>(in) + (static_cast<std::int64_t>(h) * gpr + gi) * 16 * channels + c0 / 2;
  std::uint32_t raw[32];
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) raw[i] = src[i * (channels / 2)];
  double sa[4] = {0.0, 0.0, 0.0, 0.0}, sb[4] = {0.0, 0.0, 0.0, 0.0};
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) {
    const float2 f = group_cuda::raw2_to_float2<T>(raw[i]);
    const unsigned k = T == DType::f16 ? i % 4 : 0;  // bf16: one in-order sum
    sa[k] += fabs(static_cast<double>(f.x));
    sb[k] += fabs(static_cast<double>(f.y));
  }
  const double mean_a = (T == DType::f16 ? (sa[0] + sa[1]) + (sa[2] + sa[3]) : sa[0]) / 32.0;
  const double mean_b = (T == DType::f16 ? (sb[0] + sb[1]) + (sb[2] + sb[3]) : sb[0]) / 32.0;
  P dz, ndz;
  if constexpr (T == DType::f16) {
    dz = __halves2half2(__float2half_rd(__double2float_rd(gamma * mean_a)), __float2half_rd(__double2float_rd(gamma * mean_b)));
  } else {
    dz = __halves2bfloat162(__float2bfloat16_rd(__double2float_rd(gamma * mean_a)), __float2bfloat16_rd(__double2float_rd(gamma * mean_b)));
  }
  ndz = __hneg2(dz);
  std::uint32_t wa[2] = {0, 0}, wb[2] = {0, 0};
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) {
    const P v = *reinterpret_cast<const P*>(&raw[i]);
    const std::uint32_t up = __hgt2_mask(v, dz) & 0x00010001u, down = __hlt2_mask(v, ndz) & 0x00010001u;
    const std::uint32_t slot = (up << 1) | (~(up | down) & 0x00010001u);  // per half: 2 up, 1 zero, 0 down (t + 1)
    wa[i / 16] |= (slot & 3u) << (2 * (i % 16));
    wb[i / 16] |= (slot >> 16) << (2 * (i % 16));
  }
  const CodeLayout layout = p == Packing::release ? CodeLayout::release : CodeLayout::dense;
  const std::int64_t j0 = static_cast<std::int64_t>(gi) * 32;
  reinterpret_cast<uint2*>(slots)[group_format::code_word(layout, g, 2, h, c0, j0) / 2] = make_uint2(wa[0], wa[1]);
  reinterpret_cast<uint2*>(slots)[group_format::code_word(layout, g, 2, h, c0 + 1, j0) / 2] = make_uint2(wb[0], wb[1]);
  if (p == Packing::release) {  // magnitude-free: the scale is mean |x|; the release min a constant
    const std::int64_t ga = g.group_index(h, c0, gi), gb = g.group_index(h, c0 + 1, gi);
    group_cuda::store_scalar(s.scales, ga, sd, static_cast<float>(mean_a));
    group_cuda::store_scalar(s.scales, gb, sd, static_cast<float>(mean_b));
    group_cuda::store_scalar(s.mins, ga, sd, ternary_format::kReleaseMin);
    group_cuda::store_scalar(s.mins, gb, sd, ternary_format::kReleaseMin);
  }
}

// Axis token: one group (32 contiguous channels of a token) per thread.
template <DType T>
__global__ void encode_token_fast(const void* in, GroupGrid g, double gamma, Reconstruction rec, Packing p, DType sd,
                                  Sections s, std::uint32_t* slots) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= g.group_count()) return;
  const std::int64_t gpr = g.groups_per_row(), row = k / gpr, gi = k % gpr;
  const CodeLayout layout = p == Packing::release ? CodeLayout::release : CodeLayout::dense;
  float x[32];
  group_cuda::load32<T>(in, 32 * k, x);
  ternarize_group(x, gamma, rec, p, sd, k, slots + group_format::code_word(layout, g, 2, row / g.rows, row % g.rows, gi * 32), s);
}

// base3 byte b from the slot stream: trits 5b .. 5b + 4 are slot bits [10 b, 10 b + 10). The stream is padded with
// one zero word past its end; a missing trit past the last element reads slot 0 and adds 0 (absent digits are 0).
__device__ inline unsigned base3_byte(unsigned ten) {
  unsigned byte = 0;
#pragma unroll
  for (int i = 4; i >= 0; --i) byte = byte * 3u + ((ten >> (2 * i)) & 3u);
  return byte;
}
// Thread t writes bytes [4t, 4t + 4) (one 4-byte store; `codes` is 4-byte aligned, fast_path): slot bits
// [40 t, 40 t + 40), which start at bit 0, 8, 16 or 24 of word 40 t / 32 and so lie within that word and the next.
// The last thread writes the bytes that remain one by one. (One byte per thread took 10.8 us for the 2.6 MB of
// codes of a 32k-token layer on the H200, more than a third of the encode kernel before it.)
__global__ void pack_base3(const std::uint32_t* slots, std::uint8_t* codes, std::int64_t code_bytes) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, b0 = 4 * t;
  if (b0 >= code_bytes) return;
  const std::int64_t bit = 40 * t;
  const std::uint64_t pair = static_cast<std::uint64_t>(slots[bit / 32]) | (static_cast<std::uint64_t>(slots[bit / 32 + 1]) << 32);
  const std::uint64_t forty = pair >> (bit % 32);
  if (b0 + 4 <= code_bytes) {
    std::uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) word |= base3_byte(static_cast<unsigned>(forty >> (10 * j)) & 0x3ffu) << (8 * j);
    reinterpret_cast<std::uint32_t*>(codes)[t] = word;
    return;
  }
  for (std::int64_t b = b0; b < code_bytes; ++b)
    codes[b] = static_cast<std::uint8_t>(base3_byte(static_cast<unsigned>(forty >> (10 * (b - b0))) & 0x3ffu));
}

// The block's table of ternary_format::base3_byte_slots in shared memory (every thread of the block calls it,
// before any returns: it synchronises the block).
__device__ inline const std::uint16_t* byte_slot_table() {
  __shared__ std::uint16_t table[ternary_format::kByteSlotEntries];
  for (int i = threadIdx.x; i < ternary_format::kByteSlotEntries; i += blockDim.x) table[i] = ternary_format::base3_byte_slots(static_cast<unsigned>(i));
  __syncthreads();
  return table;
}

// The 32 slots t + 1 of the group whose trits start at canonical stream index i0, slot i at bits [2 i, 2 i + 2).
// base3: the at most 8 bytes that hold them are read once and their 40 digits unpacked into 2-bit slots (digit d of
// byte j at slot 5 j + d) through the byte -> slots table (byte_slot_table: one shared-memory read per byte instead
// of five divisions), from which the group's 32 are taken at the run-time offset i0 mod 5; `code_bytes` bounds the
// reads. Slot packings: the group's two slot words at `slot_word`.
__device__ inline std::uint64_t group_slots(const std::uint8_t* codes, Packing p, std::int64_t i0, std::int64_t slot_word,
                                            std::int64_t code_bytes, const std::uint16_t* byte_slots) {
  if (p == Packing::base3) {
    const std::int64_t b0 = i0 / 5;
    const unsigned r0 = static_cast<unsigned>(i0 % 5);
    unsigned v[8];
    const std::int64_t a0 = b0 & ~std::int64_t{3};  // the three aligned words that cover bytes b0 .. b0 + 7
    if (a0 + 12 <= (code_bytes & ~std::int64_t{3})) {  // all inside the codes section: 3 word loads, not 8 byte loads
      const std::uint32_t* w = reinterpret_cast<const std::uint32_t*>(codes + a0);
      const std::uint32_t w0 = w[0], w1 = w[1], w2 = w[2];
      const unsigned o = static_cast<unsigned>(b0 - a0);  // 0..3
      const std::uint32_t lo = __funnelshift_r(w0, w1, 8 * o), hi = __funnelshift_r(w1, w2, 8 * o);  // bytes b0 .. b0 + 7
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        v[j] = (lo >> (8 * j)) & 0xFFu;
        v[j + 4] = (hi >> (8 * j)) & 0xFFu;
      }
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = b0 + j < code_bytes ? codes[b0 + j] : 0u;
    }
    std::uint64_t lo = 0;  // slots 0..31: byte j's 10 slot bits at bit 10 j (byte 6: its low 4 bits, slots 30 and 31)
#pragma unroll
    for (int j = 0; j < 7; ++j) lo |= static_cast<std::uint64_t>(byte_slots[v[j]]) << (10 * j);
    // slots 32..39: byte 6's slots 32..34, then byte 7's 35..39
    const std::uint32_t hi = (static_cast<std::uint32_t>(byte_slots[v[6]]) >> 4) | (static_cast<std::uint32_t>(byte_slots[v[7]]) << 6);
    // The group's 32 slots, from slot r0 on (r0 <= 4: slots r0 .. 31 of lo, then r0 of hi), shifted once so that
    // the callers take them at compile-time shifts (one run-time 64-bit shift per slot before).
    return r0 == 0 ? lo : (lo >> (2 * r0)) | (static_cast<std::uint64_t>(hi) << (64 - 2 * r0));
  }
  const std::uint32_t* w = reinterpret_cast<const std::uint32_t*>(codes) + slot_word;
  return static_cast<std::uint64_t>(w[0]) | (static_cast<std::uint64_t>(w[1]) << 32);
}

// Decoded value i of a group from its slots (group_slots): (slot - 1) * u in fp32, as the reference.
__device__ __forceinline__ float trit_value(std::uint64_t slots, int i, float u) {
  return static_cast<float>(static_cast<int>(static_cast<unsigned>(slots >> (2 * i)) & 3u) - 1) * u;
}

// The 32 decoded values of a group.
__device__ inline void decode_group_trits(const std::uint8_t* codes, Packing p, std::int64_t i0, std::int64_t slot_word, float u,
                                          float (&x)[32], std::int64_t code_bytes, const std::uint16_t* byte_slots) {
  const std::uint64_t slots = group_slots(codes, p, i0, slot_word, code_bytes, byte_slots);
#pragma unroll
  for (int i = 0; i < 32; ++i) x[i] = trit_value(slots, i, u);
}

// fp16 / bf16 output by one packed fma per two values: the reference's value (slot - 1) * u (fp32, exact: -u, +0 or
// +u) rounded to the output dtype is RN(slot * v - v) with v = RN(u) the scale rounded to the output dtype, computed
// by fma.rn.{f16,bf16}x2 with one rounding: slot * v - v is exactly -v, +0 (v - v) or +v (the product 2 v inside the
// fma is exact even where it would overflow the dtype), and RN(+-u) = +-RN(u). That needs v finite and v > 0: v = +0
// (u = +0, or a u below half the dtype's smallest subnormal) would give +0 for slot 0 where the reference has
// RN((0 - 1) u) = -0, and v = inf would give NaN for slots 1 and 2 (inf - inf, 2 inf - inf). The
// slots reach the fma as the exact 2-byte values 1024 + slot (fp16) / 128 + slot (bf16: spacing 1 from 2^7 on), biased
// by one lop3 and unbiased by one subtraction (uniform.cu's decode_channel_half does the same for codes). Per two
// values a shift, the lop3, the subtraction, the fma and the store, against about 12 integer instructions per word
// for the earlier bit-pattern assembly. Groups where the condition fails (a scale that is not finite, not positive or
// beyond the dtype, or a slot 3, only from corrupt bytes: the reference decodes it as 2 u) go through fp32.
template <DType O>
struct TritPairs {
  using P = std::conditional_t<O == DType::f16, __half2, __nv_bfloat162>;
  static constexpr std::uint32_t kBias = O == DType::f16 ? 0x64006400u : 0x43004300u;  // 1024 / 128 per half
  // v = RN(u) finite and > 0 (bits below the dtype's +inf, above +0; the sign bit clear).
  static __device__ bool usable(std::uint16_t v) { return v != 0 && v < (O == DType::f16 ? 0x7C00u : 0x7F80u); }
  static __device__ P pair(std::uint32_t bits) { return *reinterpret_cast<const P*>(&bits); }
  // The output word of the pair whose slots sit at bits sh, sh + 1 (low half) and 16 + sh, 17 + sh (high half) of x.
  static __device__ std::uint32_t word(std::uint32_t x, unsigned sh, P v, P minus_v) {
    const std::uint32_t biased = group_cuda::biased_code_pair(x, sh, 0x00030003u, kBias);
    const P r = __hfma2(__hsub2(pair(biased), pair(kBias)), v, minus_v);
    return *reinterpret_cast<const std::uint32_t*>(&r);
  }
};
__device__ inline bool plain_slots(std::uint64_t slots) { return (slots & (slots >> 1) & 0x5555555555555555ull) == 0; }

// decode_channel_fast's work (the thread's groups; returns at once for a thread past the last one).
template <DType O, unsigned kPairs>
__device__ __forceinline__ void decode_channel_groups(const std::uint8_t* codes, const std::uint8_t* scales, GroupGrid g,
                                                      Reconstruction rec, Packing p, DType sd, void* out, bool patterns) {
  const std::uint16_t* byte_slots = byte_slot_table();
  const std::int64_t code_bytes = static_cast<std::int64_t>(ternary_format::codes_bytes(p, g));
  const std::int64_t pairs = kPairs != 0 ? kPairs : g.rows / 2, channels = 2 * pairs, tokens = g.length, gpr = g.groups_per_row();
  const std::int64_t quads = (gpr + kGroupsPerThread - 1) / kGroupsPerThread;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.heads * quads * pairs) return;
  const std::int64_t c0 = 2 * (t % pairs), quad = (t / pairs) % quads, h = t / (pairs * quads);
  const CodeLayout layout = p == Packing::release ? CodeLayout::release : CodeLayout::dense;
  for (std::int64_t gi = quad * kGroupsPerThread; gi < gpr && gi < (quad + 1) * kGroupsPerThread; ++gi) {
    const float ua = rec == Reconstruction::scaled ? group_cuda::load_scalar(scales, g.group_index(h, c0, gi), sd) : 1.0f;
    const float ub = rec == Reconstruction::scaled ? group_cuda::load_scalar(scales, g.group_index(h, c0 + 1, gi), sd) : 1.0f;
    const std::int64_t wa = p == Packing::base3 ? 0 : group_format::code_word(layout, g, 2, h, c0, gi * 32);
    const std::int64_t wb = p == Packing::base3 ? 0 : group_format::code_word(layout, g, 2, h, c0 + 1, gi * 32);
    const std::uint64_t sa = group_slots(codes, p, g.stream_index(h, c0, gi * 32), wa, code_bytes, byte_slots);
    const std::uint64_t sb = group_slots(codes, p, g.stream_index(h, c0 + 1, gi * 32), wb, code_bytes, byte_slots);
    if constexpr (O != DType::f32) {
      using F = TritPairs<O>;
      const std::uint16_t va = group_cuda::to_bits16<O>(ua), vb = group_cuda::to_bits16<O>(ub);
      if (patterns && F::usable(va) && F::usable(vb) && plain_slots(sa) && plain_slots(sb)) {
        const std::uint32_t v_bits = va | (static_cast<std::uint32_t>(vb) << 16);
        const typename F::P v = F::pair(v_bits), minus_v = F::pair(v_bits | 0x80008000u);
        std::uint32_t* o = reinterpret_cast<std::uint32_t*>(out) + ((h * tokens + gi * 32) * channels + c0) / 2;
#pragma unroll
        for (unsigned k = 0; k < 2; ++k) {  // slot word k of each group: tokens 16 k .. 16 k + 15
          const auto xa = static_cast<std::uint32_t>(sa >> (32 * k)), xb = static_cast<std::uint32_t>(sb >> (32 * k));
          const std::uint32_t lo = __byte_perm(xa, xb, 0x5410), hi = __byte_perm(xa, xb, 0x7632);  // tokens +0..7, +8..15
#pragma unroll
          for (unsigned j = 0; j < 16; ++j) o[static_cast<std::int64_t>(16 * k + j) * pairs] = F::word(j < 8 ? lo : hi, 2 * (j % 8), v, minus_v);
        }
        continue;
      }
    }
#pragma unroll
    for (int i = 0; i < 32; ++i) group_cuda::store2<O>(out, (h * tokens + gi * 32 + i) * channels + c0, trit_value(sa, i, ua), trit_value(sb, i, ub));
  }
}

// Axis channel: a channel pair and kGroupsPerThread groups of 32 tokens per thread. kPairs: the channel pairs when
// they are 64 (128 channels: the 32 stores of a group at compile-time offsets), 0 for any other count. wait_late:
// GridOrder's (the first kernel of a call with Execution::after_independent_kernel: this kernel touches only the
// call's input bytes and output values in device memory; its byte -> slots table is in shared memory).
template <DType O, unsigned kPairs>
__global__ void decode_channel_fast(const std::uint8_t* codes, const std::uint8_t* scales, GroupGrid g, Reconstruction rec,
                                    Packing p, DType sd, void* out, bool patterns, bool wait_late) {
  const dependent_launch::GridOrder order(wait_late);  // launched by launch_dependent (dependent_launch.cuh)
  decode_channel_groups<O, kPairs>(codes, scales, g, rec, p, sd, out, patterns);
  order.end();  // every thread reaches it (decode_channel_groups returns, never exits)
}

// decode_token_fast's work (the thread's group; returns at once for a thread past the last one).
template <DType O>
__device__ __forceinline__ void decode_token_group(const std::uint8_t* codes, const std::uint8_t* scales, GroupGrid g,
                                                   Reconstruction rec, Packing p, DType sd, void* out) {
  const std::uint16_t* byte_slots = byte_slot_table();
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= g.group_count()) return;
  const std::int64_t gpr = g.groups_per_row(), row = k / gpr, gi = k % gpr;
  const CodeLayout layout = p == Packing::release ? CodeLayout::release : CodeLayout::dense;
  const float u = rec == Reconstruction::scaled ? group_cuda::load_scalar(scales, k, sd) : 1.0f;
  float x[32];
  decode_group_trits(codes, p, 32 * k, p == Packing::base3 ? 0 : group_format::code_word(layout, g, 2, row / g.rows, row % g.rows, gi * 32), u, x,
                     static_cast<std::int64_t>(ternary_format::codes_bytes(p, g)), byte_slots);
  group_cuda::store32<O>(out, 32 * k, x);
}

// Axis token: one group of 32 channels per thread. wait_late: GridOrder's (the first kernel of a call with
// Execution::after_independent_kernel), as decode_channel_fast's.
template <DType O>
__global__ void decode_token_fast(const std::uint8_t* codes, const std::uint8_t* scales, GroupGrid g, Reconstruction rec,
                                  Packing p, DType sd, void* out, bool wait_late) {
  const dependent_launch::GridOrder order(wait_late);  // launched by launch_dependent (dependent_launch.cuh)
  decode_token_group<O>(codes, scales, g, rec, p, sd, out);
  order.end();  // every thread reaches it
}

// Whether the fast kernels apply: G = 32, whole groups, aligned buffers (codes and scales on 4 bytes), channel pairs.
bool fast_path(const Config& c, const GroupGrid& g, const void* values, const void* bytes, DType values_dtype) {
  if (c.group != 32 || g.length % 32 != 0 || !group_cuda::aligned(bytes, 4)) return false;
  if (c.packing != Packing::base3 && !group_format::word_aligned_groups(slot_layout(c.packing), g, 2)) return false;
  if (c.packing == Packing::base3 && ternary_format::has_scales(c.packing, c.reconstruction) &&
      !group_cuda::aligned(static_cast<const std::uint8_t*>(bytes) + ternary_format::codes_bytes(c.packing, g), static_cast<unsigned>(dtype_size(c.scale_dtype))))
    return false;
  if (c.axis == GroupAxis::channel) return g.rows % 2 == 0 && group_cuda::aligned(values, 2 * static_cast<unsigned>(dtype_size(values_dtype)));
  return group_cuda::aligned(values, 16);
}

// VIDKV_CUDA_TERNARY_DECODE=fp32 decodes every channel-axis group through fp32 (not TritPairs' packed fma; A / B
// measurements).
bool trit_patterns() {
  static const bool off = env_equals("VIDKV_CUDA_TERNARY_DECODE", "fp32");
  return !off;
}

// Whether encode_channel_warp applies (fast_path holds): magnitude-free reconstruction, 2-byte input, a multiple of 16
// channels, 8-byte aligned slot words, 32-bit warp indices. VIDKV_CUDA_TERNARY_CHANNEL_ENCODE=thread selects
// encode_channel_fast instead (A / B measurements).
bool channel_warp_applies(const Config& c, const GroupGrid& g, DType in_dtype, const void* slots) {
  if (c.reconstruction != Reconstruction::magnitude_free || in_dtype == DType::f32 || g.rows % 16 != 0 || !group_cuda::aligned(slots, 8))
    return false;
  if (g.heads * ((g.groups_per_row() + 3) / 4) * (g.rows / 16) * 32 >= (std::int64_t{1} << 31)) return false;
  static const bool off = env_equals("VIDKV_CUDA_TERNARY_CHANNEL_ENCODE", "thread");
  return !off;
}

std::int64_t fast_threads(const Config& c, const GroupGrid& g) {
  if (c.axis == GroupAxis::token) return g.group_count();
  return g.heads * ((g.groups_per_row() + kGroupsPerThread - 1) / kGroupsPerThread) * (g.rows / 2);
}

bool word_runs(const Config& c, const GroupGrid& g, const void* codes) {
  return c.packing != Packing::base3 && group_format::word_aligned_groups(slot_layout(c.packing), g, 2) &&
         group_cuda::aligned4(codes);
}

// Packing fragment: coded in packing slots2 by the kernels below, then the slots (and the scales where group-major)
// permuted (quantization/fragment_permute.h).
Config slots2_config(const Config& c) {
  Config s = c;
  s.packing = Packing::slots2;
  return s;
}
fragment_permute::BlockSections fragment_sections(const Config& c, const GroupGrid& g) {
  return {g, ternary_format::kFragmentForm, static_cast<int>(dtype_size(c.scale_dtype)),
          ternary_format::has_scales(c.packing, c.reconstruction) ? 1 : 0};
}

}  // namespace

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream) {
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
  if (c.packing == Packing::fragment) {
    encode(slots2_config(c), in, in_dtype, shape, out, stream);
    fragment_permute_cuda::dense_to_fragment(fragment_sections(c, g), out, stream, "ternary encode (fragment permutation)");
    return;
  }
  const std::size_t code_bytes = ternary_format::codes_bytes(c.packing, g);
  const Sections s = ternary_format::sections(c.packing, c.reconstruction, g, c.scale_dtype, out);
  const bool runs = word_runs(c, g, out);
  auto* st = static_cast<cudaStream_t>(stream);
  if (fast_path(c, g, in, out, in_dtype)) {
    // base3: slots to a scratch stream (+1 zero word of padding for pack_base3), else straight to the codes.
    const std::size_t slot_words = group_format::code_bytes(CodeLayout::dense, g, 2) / 4 + 1;
    DeviceBuffer scratch(c.packing == Packing::base3 ? slot_words * 4 : 0, stream);
    // Every group writes its two slot words (whole groups of 32): only the padding word needs zeros.
    if (c.packing == Packing::base3) fill_device(scratch.as<std::uint32_t>() + (slot_words - 1), 0, 4, stream);
    std::uint32_t* slots = c.packing == Packing::base3 ? scratch.as<std::uint32_t>() : reinterpret_cast<std::uint32_t*>(out);
    group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
      constexpr DType T = decltype(tag)::value;
      const unsigned blocks = group_cuda::blocks_for(fast_threads(c, g));
      if (c.axis == GroupAxis::channel && channel_warp_applies(c, g, in_dtype, slots)) {
        if constexpr (T != DType::f32) {
          const auto slices = static_cast<unsigned>(g.rows / 16), quads = static_cast<unsigned>((g.groups_per_row() + 3) / 4);
          const auto warps = static_cast<unsigned>(g.heads * quads * slices);
          dependent_launch::launch_dependent<encode_channel_warp<T>>(group_cuda::blocks_for(std::int64_t{32} * warps), group_cuda::kThreads, 0, st, in,
                                                                     group_cuda::Divider(slices), group_cuda::Divider(quads), g, warps, c.gamma,
                                                                     c.packing, c.scale_dtype, s, slots);
        }
      } else if (c.axis == GroupAxis::channel)
        dependent_launch::launch_dependent<encode_channel_fast<T>>(blocks, group_cuda::kThreads, 0, st, in, g, c.gamma, c.reconstruction, c.packing, c.scale_dtype, s, slots);
      else
        dependent_launch::launch_dependent<encode_token_fast<T>>(blocks, group_cuda::kThreads, 0, st, in, g, c.gamma, c.reconstruction, c.packing, c.scale_dtype, s, slots);
    });
    check_launch("ternary encode (fast path)");
    if (c.packing == Packing::base3) {
      dependent_launch::launch_dependent<pack_base3>(group_cuda::blocks_for((static_cast<std::int64_t>(code_bytes) + 3) / 4), group_cuda::kThreads, 0, st, 
          slots, out, static_cast<std::int64_t>(code_bytes));
      check_launch("ternary encode (base3 packing)");
    }
    return;
  }
  DeviceBuffer dead_zones(runs ? 0 : static_cast<std::size_t>(g.group_count()) * sizeof(double), stream);
  group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    group_cuda::dispatch_bool(runs, [&](auto word_runs) {
      constexpr bool kWordRuns = decltype(word_runs)::value;  // else the dead zones go to the byte pass
      encode_groups<T, kWordRuns><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, g, c.axis, c.gamma, c.reconstruction, c.packing, c.scale_dtype, s,
          kWordRuns ? nullptr : dead_zones.as<double>());
    });
    if (!runs) {
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

bool decode_waits_late() {
  static const bool on = !env_equals("VIDKV_CUDA_TERNARY_LATE_WAIT", "off");
  return on;
}

void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream,
            bool after_independent_kernel) {
  after_independent_kernel = after_independent_kernel && decode_waits_late();
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
  if (c.packing == Packing::fragment) {
    if (group_format::fragment_all_tail(g)) return decode(slots2_config(c), in, shape, out, out_dtype, stream, after_independent_kernel);
    const std::size_t total = ternary_format::total_bytes(c.packing, c.reconstruction, g, c.scale_dtype);
    DeviceBuffer slots(total, stream);
    // The first kernel (the permutation) writes a scratch allocated in this call: it waits first, whatever the caller
    // promised, and so does the decode after it.
    fragment_permute_cuda::fragment_to_dense(fragment_sections(c, g), in, slots.as<std::uint8_t>(), total, stream,
                                             "ternary decode (fragment permutation)");
    decode(slots2_config(c), slots.as<std::uint8_t>(), shape, out, out_dtype, stream);
    return;
  }
  const std::uint8_t* scales = ternary_format::sections(c.packing, c.reconstruction, g, c.scale_dtype, in).scales;
  const bool runs = word_runs(c, g, in);
  auto* st = static_cast<cudaStream_t>(stream);
  if (fast_path(c, g, out, in, out_dtype)) {
    group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
      constexpr DType O = decltype(tag)::value;
      const unsigned blocks = group_cuda::blocks_for(fast_threads(c, g));
      if (c.axis == GroupAxis::channel)
        group_cuda::dispatch_bool(g.rows == 128, [&](auto pairs64) {
          constexpr unsigned kPairs = decltype(pairs64)::value ? 64 : 0;
          dependent_launch::launch_dependent<decode_channel_fast<O, kPairs>>(blocks, group_cuda::kThreads, 0, st, in, scales, g, c.reconstruction, c.packing,
                                                                             c.scale_dtype, out, trit_patterns(), after_independent_kernel);
        });
      else
        dependent_launch::launch_dependent<decode_token_fast<O>>(blocks, group_cuda::kThreads, 0, st, in, scales, g, c.reconstruction, c.packing, c.scale_dtype, out,
                                                                 after_independent_kernel);
    });
    if (after_independent_kernel) dependent_launch::count_late_wait();
    check_launch("ternary decode (fast path)");
    return;
  }
  group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
    constexpr DType O = decltype(tag)::value;
    group_cuda::dispatch_bool(runs, [&](auto word_runs) {
      constexpr bool kWordRuns = decltype(word_runs)::value;
      decode_groups<O, kWordRuns><<<group_cuda::blocks_for(g.group_count()), group_cuda::kThreads, 0, st>>>(
          in, scales, g, c.axis, c.reconstruction, c.packing, c.scale_dtype, out);
    });
  });
  check_launch("ternary decode");
}

}  // namespace vidkv::ternary_cuda
