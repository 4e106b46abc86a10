// uniform on CUDA (uniform_cuda.h): one thread per group; bytes bit-identical to the CPU reference (uniform.cpp).
#include <cuda_runtime.h>

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
// The group's 32 values live in registers (loaded once, 32 independent loads in flight per thread), codes are
// assembled in BITS words and stored whole, scales and mins with one aligned store each. Same operations per element
// as the reference (stored_group, encode_value, decode_value), so the same bytes and floats.

// uniform_format::encode_value with a multiplication by the reciprocal instead of the division, and the division
// only where the two could give different codes (the argument of uniform_avx512.cpp's codes_fast): with u = 2^-24,
// d = x - mn, q = fl(d / s) and q' = fl(d * fl(1 / s)), |q - q'| <= (3u + u^2) |d / s|; clamping is 1-Lipschitz and
// rounding jumps only at k + 0.5, so below the top code (|d / s| < top + 1) the codes agree unless clamp(q') lies
// within eps = 4u (top + 1) of some k + 0.5; beyond the clamps both give top or 0. Elements within eps of a
// boundary (a few in a million) take encode_value itself; so does every element of a group whose reciprocal
// exceeds 2^100 (an fp32 scale below 2^-100), where the bound does not hold. Scale 0: reciprocal 0, code 0.
struct FastCoder {
  float mn, scale, reciprocal, top, limit;
  bool exact_only;
  unsigned bits;

  __device__ FastCoder(const uniform_format::StoredGroup& r, unsigned b)
      : mn(r.mn), scale(r.scale), reciprocal(r.scale > 0.0f ? 1.0f / r.scale : 0.0f)  /* IEEE division: fl(1 / s) */,
        top(static_cast<float>(uniform_format::max_code(b))), limit(0.5f - 4.0f * 0x1p-24f * (top + 1.0f)),
        exact_only(reciprocal >= 0x1p100f), bits(b) {}

  __device__ unsigned code(float x) const {
    if (exact_only) return uniform_format::encode_value(x, scale, mn, bits);
    const float v = fminf(fmaxf(__fmul_rn(__fsub_rn(x, mn), reciprocal), 0.0f), top);
    const float c = rintf(v);
    if (fabsf(__fsub_rn(v, c)) > limit) return uniform_format::encode_value(x, scale, mn, bits);
    return static_cast<unsigned>(c);
  }
};

template <unsigned BITS>
__device__ inline void decode_group_to_registers(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins,
                                                 DType sd, std::int64_t gidx, std::int64_t w0, float (&x)[32]) {
  const float scale = group_cuda::load_scalar(scales, gidx, sd), mn = group_cuda::load_scalar(mins, gidx, sd);
  std::uint32_t words[BITS];
  const std::uint32_t* src = reinterpret_cast<const std::uint32_t*>(codes) + w0;
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) words[k] = src[k];
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) {
    const unsigned q = (words[(i * BITS) / 32] >> ((i * BITS) % 32)) & ((1u << BITS) - 1u);
    x[i] = __fadd_rn(__fmul_rn(static_cast<float>(q), scale), mn);  // decode_value, rounded twice as the reference
  }
}

// Groups per thread along the tokens on the channel axis. Measured on an H200 (28 x 4 x 32768 x 128 fp16, kivi-2 keys):
// 1 group per thread decodes at 1819 GB/s against 1466 with 4 (more warps in flight), encodes alike.
constexpr std::int64_t kGroupsPerThread = 1;

// min and max of 32 values with the reference's results bit for bit: fminf / fmaxf give the same value as its
// ordered scan (x < mn ? x : mn) except for the sign of a zero (-0 == +0 keeps whichever came first there), so a
// zero result is redone in order.
template <class Get>
__device__ inline void ordered_min_max(Get get, float& mn, float& mx) {
  mn = get(0);
  mx = mn;
#pragma unroll
  for (int i = 1; i < 32; ++i) {
    mn = fminf(mn, get(i));
    mx = fmaxf(mx, get(i));
  }
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

// Codes of one group (32 values from get(i)) into BITS words at word w0, scale and min at gidx.
template <unsigned BITS, class Get>
__device__ inline void encode_group_values(Get get, DType sd, std::int64_t gidx, std::int64_t w0, const Sections& s) {
  float mn, mx;
  ordered_min_max(get, mn, mx);
  const uniform_format::StoredGroup range = uniform_format::stored_group(mn, mx, static_cast<float>(uniform_format::max_code(BITS)), sd);
  group_cuda::store_scalar(s.scales, gidx, sd, range.scale);
  group_cuda::store_scalar(s.mins, gidx, sd, range.mn);
  const FastCoder coder(range, BITS);
  std::uint32_t words[BITS];
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) words[k] = 0;
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) words[(i * BITS) / 32] |= coder.code(get(i)) << ((i * BITS) % 32);
  std::uint32_t* dst = reinterpret_cast<std::uint32_t*>(s.codes) + w0;
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) dst[k] = words[k];
}

// Axis channel: a thread takes two adjacent channels of one group of 32 tokens (a 4-byte load of an fp16 pair per
// token: a warp reads 64 channels = 128 contiguous bytes of each token row), keeping the pairs as loaded (32
// registers for fp16) so that 4 blocks of 256 fit an SM.
template <DType T, unsigned BITS>
__global__ void __launch_bounds__(256, 4) encode_channel_fast(const void* in, GroupGrid g, DType sd, CodeLayout layout, Sections s) {
  const std::int64_t channels = g.rows, tokens = g.length, pairs = channels / 2, gpr = g.groups_per_row();
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.heads * gpr * pairs) return;
  const std::int64_t c0 = 2 * (t % pairs), gi = (t / pairs) % gpr, h = t / (pairs * gpr);
  typename group_cuda::RawPair<T>::type raw[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) raw[i] = group_cuda::load_raw2<T>(in, (h * tokens + gi * 32 + i) * channels + c0);
  encode_group_values<BITS>([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).x; }, sd, g.group_index(h, c0, gi),
                            group_format::code_word(layout, g, BITS, h, c0, gi * 32), s);
  encode_group_values<BITS>([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).y; }, sd, g.group_index(h, c0 + 1, gi),
                            group_format::code_word(layout, g, BITS, h, c0 + 1, gi * 32), s);
}

template <DType O, unsigned BITS>
__global__ void decode_channel_fast(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, GroupGrid g,
                                    DType sd, CodeLayout layout, void* out) {
  const std::int64_t channels = g.rows, tokens = g.length, pairs = channels / 2, gpr = g.groups_per_row();
  const std::int64_t quads = (gpr + kGroupsPerThread - 1) / kGroupsPerThread;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.heads * quads * pairs) return;
  const std::int64_t c0 = 2 * (t % pairs), quad = (t / pairs) % quads, h = t / (pairs * quads);
  for (std::int64_t gi = quad * kGroupsPerThread; gi < gpr && gi < (quad + 1) * kGroupsPerThread; ++gi) {
    float a[32], b[32];
    decode_group_to_registers<BITS>(codes, scales, mins, sd, g.group_index(h, c0, gi), group_format::code_word(layout, g, BITS, h, c0, gi * 32), a);
    decode_group_to_registers<BITS>(codes, scales, mins, sd, g.group_index(h, c0 + 1, gi), group_format::code_word(layout, g, BITS, h, c0 + 1, gi * 32), b);
#pragma unroll
    for (int i = 0; i < 32; ++i) group_cuda::store2<O>(out, (h * tokens + gi * 32 + i) * channels + c0, a[i], b[i]);
  }
}

// Axis token, encode: one group (32 contiguous channels of a token, 16-byte loads) per thread. Measured on an H200
// (28 x 4 x 32768 x 128 fp16, kivi-2 values): 1307 GB/s, against 911 for four lanes per group, where the per-group
// work (stored range, reciprocal) is repeated by each lane and the kernel is bound by instructions.
template <DType T, unsigned BITS>
__global__ void encode_token_fast(const void* in, GroupGrid g, DType sd, CodeLayout layout, Sections s) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= g.group_count()) return;
  const std::int64_t gpr = g.groups_per_row(), row = k / gpr, gi = k % gpr;
  float x[32];
  group_cuda::load32<T>(in, 32 * k, x);
  encode_group_values<BITS>([&](int i) { return x[i]; }, sd, k,
                            group_format::code_word(layout, g, BITS, row / g.rows, row % g.rows, gi * 32), s);
}

// Axis token, decode, warp-cooperative: four lanes per group, each decoding 8 consecutive channels from the BITS
// bytes at byte BITS * quarter of the group's word-aligned run, one 16-byte store each (a warp writes 8 groups =
// 512 contiguous bytes of fp16). Measured: 1559 GB/s against 1334 for one thread per group.
template <DType O, unsigned BITS>
__global__ void decode_token_fast(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, GroupGrid g,
                                  DType sd, CodeLayout layout, void* out) {
  const std::int64_t lane_global = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t k = lane_global / 4;
  const unsigned quarter = static_cast<unsigned>(lane_global % 4);
  if (k >= g.group_count()) return;
  const float scale = group_cuda::load_scalar(scales, k, sd), mn = group_cuda::load_scalar(mins, k, sd);
  const std::int64_t gpr = g.groups_per_row(), row = k / gpr, gi = k % gpr;
  const std::uint8_t* run = codes + 4 * group_format::code_word(layout, g, BITS, row / g.rows, row % g.rows, gi * 32) + BITS * quarter;
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
    x[i] = __fadd_rn(__fmul_rn(static_cast<float>(q), scale), mn);
  }
  group_cuda::store8<O>(out, 32 * k + 8 * quarter, x);
}

// Whether the fast kernels apply: G = 32, bits 1/2/4/8, word-aligned groups, aligned buffers, and on the channel
// axis an even channel count (channel pairs).
bool fast_path(const Config& c, const GroupGrid& g, const void* values, const void* bytes, DType values_dtype) {
  if (c.group != 32 || !group_format::release_bits_ok(c.bits) || !group_format::word_aligned_groups(c.layout, g, c.bits)) return false;
  if (!group_cuda::aligned(bytes, 4)) return false;
  if (c.axis == GroupAxis::channel) return g.rows % 2 == 0 && group_cuda::aligned(values, 2 * static_cast<unsigned>(dtype_size(values_dtype)));
  return group_cuda::aligned(values, 16);
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

std::int64_t fast_threads(const Config& c, const GroupGrid& g, bool decode) {
  if (c.axis == GroupAxis::token) return decode ? 4 * g.group_count() : g.group_count();  // decode: four lanes per group
  const std::int64_t quads = (g.groups_per_row() + kGroupsPerThread - 1) / kGroupsPerThread;
  return g.heads * quads * (g.rows / 2);
}

}  // namespace

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream) {
  const GroupGrid g = group_format::grid_of(c, shape, shape.channels);
  if (g.group_count() == 0) return;
  const Sections s = uniform_format::sections(c.layout, g, c.bits, c.scale_dtype, out);
  const bool word_runs = group_format::word_aligned_groups(c.layout, g, c.bits) && group_cuda::aligned4(out);
  auto* st = static_cast<cudaStream_t>(stream);
  if (fast_path(c, g, in, out, in_dtype)) {
    group_cuda::dispatch_dtype(in_dtype, [&](auto tag) {
      constexpr DType T = decltype(tag)::value;
      dispatch_bits(c.bits, [&](auto bits_tag) {
        constexpr unsigned B = decltype(bits_tag)::value;
        const unsigned blocks = group_cuda::blocks_for(fast_threads(c, g, false));
        if (c.axis == GroupAxis::channel)
          encode_channel_fast<T, B><<<blocks, group_cuda::kThreads, 0, st>>>(in, g, c.scale_dtype, c.layout, s);
        else
          encode_token_fast<T, B><<<blocks, group_cuda::kThreads, 0, st>>>(in, g, c.scale_dtype, c.layout, s);
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
        const unsigned blocks = group_cuda::blocks_for(fast_threads(c, g, true));
        if (c.axis == GroupAxis::channel)
          decode_channel_fast<O, B><<<blocks, group_cuda::kThreads, 0, st>>>(in, scales, mins, g, c.scale_dtype, c.layout, out);
        else
          decode_token_fast<O, B><<<blocks, group_cuda::kThreads, 0, st>>>(in, scales, mins, g, c.scale_dtype, c.layout, out);
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
