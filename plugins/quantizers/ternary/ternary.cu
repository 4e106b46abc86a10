// ternary on CUDA (ternary_cuda.h): bytes bit-identical to the CPU reference (ternary.cpp).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/dependent_launch.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/ternary/ternary_cuda.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/cuda/group_cuda_io.cuh"

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

__host__ __device__ constexpr CodeLayout slot_layout(Packing p) {
  return p == Packing::slots2 ? CodeLayout::dense : CodeLayout::release;
}

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

// The 32 decoded values of a group whose trits start at canonical stream index i0. base3: the at most 8 bytes that
// hold them are read once and their 40 digits unpacked into 2-bit slots (digit d of byte j at slot 5 j + d, the
// value t + 1) through the byte -> slots table (byte_slot_table: one shared-memory read per byte instead of five
// divisions), from which the group's 32 are taken at the run-time offset i0 mod 5; `code_bytes` bounds the reads.
__device__ inline void decode_group_trits(const std::uint8_t* codes, Packing p, const GroupGrid& g, std::int64_t i0,
                                          std::int64_t slot_word, float u, float (&x)[32], std::int64_t code_bytes,
                                          const std::uint16_t* byte_slots) {
  if (p == Packing::base3) {
    const std::int64_t b0 = i0 / 5;
    const unsigned r0 = static_cast<unsigned>(i0 % 5);
    unsigned v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = b0 + j < code_bytes ? codes[b0 + j] : 0u;
    std::uint64_t lo = 0;  // slots 0..31: byte j's 10 slot bits at bit 10 j (byte 6: its low 4 bits, slots 30 and 31)
#pragma unroll
    for (int j = 0; j < 7; ++j) lo |= static_cast<std::uint64_t>(byte_slots[v[j]]) << (10 * j);
    // slots 32..39: byte 6's slots 32..34, then byte 7's 35..39
    const std::uint32_t hi = (static_cast<std::uint32_t>(byte_slots[v[6]]) >> 4) | (static_cast<std::uint32_t>(byte_slots[v[7]]) << 6);
    // The group's 32 slots, from slot r0 on (r0 <= 4: slots r0 .. 31 of lo, then r0 of hi), shifted once so that
    // the loop below takes them at compile-time shifts (one run-time 64-bit shift per slot before).
    const std::uint64_t window = r0 == 0 ? lo : (lo >> (2 * r0)) | (static_cast<std::uint64_t>(hi) << (64 - 2 * r0));
#pragma unroll
    for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(static_cast<int>(static_cast<unsigned>(window >> (2 * i)) & 3u) - 1) * u;
    return;
  }
  const std::uint32_t* w = reinterpret_cast<const std::uint32_t*>(codes) + slot_word;
  const std::uint32_t w0 = w[0], w1 = w[1];
#pragma unroll
  for (int i = 0; i < 32; ++i)
    x[i] = static_cast<float>(static_cast<int>(((i < 16 ? w0 : w1) >> (2 * (i % 16))) & 3u) - 1) * u;
}

template <DType O>
__global__ void decode_channel_fast(const std::uint8_t* codes, const std::uint8_t* scales, GroupGrid g, Reconstruction rec,
                                    Packing p, DType sd, void* out) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  const std::uint16_t* byte_slots = byte_slot_table();
  const std::int64_t code_bytes = static_cast<std::int64_t>(ternary_format::codes_bytes(p, g));
  const std::int64_t channels = g.rows, tokens = g.length, pairs = channels / 2, gpr = g.groups_per_row();
  const std::int64_t quads = (gpr + kGroupsPerThread - 1) / kGroupsPerThread;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.heads * quads * pairs) return;
  const std::int64_t c0 = 2 * (t % pairs), quad = (t / pairs) % quads, h = t / (pairs * quads);
  const CodeLayout layout = p == Packing::release ? CodeLayout::release : CodeLayout::dense;
  for (std::int64_t gi = quad * kGroupsPerThread; gi < gpr && gi < (quad + 1) * kGroupsPerThread; ++gi) {
    float a[32], b[32];
    const float ua = rec == Reconstruction::scaled ? group_cuda::load_scalar(scales, g.group_index(h, c0, gi), sd) : 1.0f;
    const float ub = rec == Reconstruction::scaled ? group_cuda::load_scalar(scales, g.group_index(h, c0 + 1, gi), sd) : 1.0f;
    decode_group_trits(codes, p, g, g.stream_index(h, c0, gi * 32), p == Packing::base3 ? 0 : group_format::code_word(layout, g, 2, h, c0, gi * 32), ua, a, code_bytes, byte_slots);
    decode_group_trits(codes, p, g, g.stream_index(h, c0 + 1, gi * 32), p == Packing::base3 ? 0 : group_format::code_word(layout, g, 2, h, c0 + 1, gi * 32), ub, b, code_bytes, byte_slots);
#pragma unroll
    for (int i = 0; i < 32; ++i) group_cuda::store2<O>(out, (h * tokens + gi * 32 + i) * channels + c0, a[i], b[i]);
  }
}

template <DType O>
__global__ void decode_token_fast(const std::uint8_t* codes, const std::uint8_t* scales, GroupGrid g, Reconstruction rec,
                                  Packing p, DType sd, void* out) {
  dependent_launch::wait_for_previous_grid();  // launched by launch_dependent (dependent_launch.cuh)
  dependent_launch::allow_next_grid();
  const std::uint16_t* byte_slots = byte_slot_table();
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= g.group_count()) return;
  const std::int64_t gpr = g.groups_per_row(), row = k / gpr, gi = k % gpr;
  const CodeLayout layout = p == Packing::release ? CodeLayout::release : CodeLayout::dense;
  const float u = rec == Reconstruction::scaled ? group_cuda::load_scalar(scales, k, sd) : 1.0f;
  float x[32];
  decode_group_trits(codes, p, g, 32 * k, p == Packing::base3 ? 0 : group_format::code_word(layout, g, 2, row / g.rows, row % g.rows, gi * 32), u, x,
                     static_cast<std::int64_t>(ternary_format::codes_bytes(p, g)), byte_slots);
  group_cuda::store32<O>(out, 32 * k, x);
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

std::int64_t fast_threads(const Config& c, const GroupGrid& g) {
  if (c.axis == GroupAxis::token) return g.group_count();
  return g.heads * ((g.groups_per_row() + kGroupsPerThread - 1) / kGroupsPerThread) * (g.rows / 2);
}

bool word_runs(const Config& c, const GroupGrid& g, const void* codes) {
  return c.packing != Packing::base3 && group_format::word_aligned_groups(slot_layout(c.packing), g, 2) &&
         group_cuda::aligned4(codes);
}

}  // namespace

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream) {
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
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
      if (c.axis == GroupAxis::channel)
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

void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream) {
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
  const std::uint8_t* scales = ternary_format::sections(c.packing, c.reconstruction, g, c.scale_dtype, in).scales;
  const bool runs = word_runs(c, g, in);
  auto* st = static_cast<cudaStream_t>(stream);
  if (fast_path(c, g, out, in, out_dtype)) {
    group_cuda::dispatch_dtype(out_dtype, [&](auto tag) {
      constexpr DType O = decltype(tag)::value;
      const unsigned blocks = group_cuda::blocks_for(fast_threads(c, g));
      if (c.axis == GroupAxis::channel)
        dependent_launch::launch_dependent<decode_channel_fast<O>>(blocks, group_cuda::kThreads, 0, st, in, scales, g, c.reconstruction, c.packing, c.scale_dtype, out);
      else
        dependent_launch::launch_dependent<decode_token_fast<O>>(blocks, group_cuda::kThreads, 0, st, in, scales, g, c.reconstruction, c.packing, c.scale_dtype, out);
    });
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
