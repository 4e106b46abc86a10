// Device helpers shared by the CUDA kernels of the grouped quantizers (uniform, sign, ternary): the thread -> group
// mapping, dtype dispatch, aligned word stores for WordRunWriter / loads for WordRunReader. CUDA sources only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "vidkv/core/dtype.h"
#include "vidkv/core/error.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::group_cuda {

using group_format::GroupAxis;
using group_format::GroupGrid;

constexpr int kThreads = 256;

// ((x >> sh) & mask) | bias as one lop3 (LUT 0xEA = (a & b) | c; written out, since the compiler otherwise emits an
// AND and an OR, each with its immediate): small codes as 2-byte pairs bias + code per half, e.g. the fp16 pair
// 1024 + q (bias 0x64006400) or the bf16 pair 128 + q (0x43004300), exact where the dtype's spacing there is 1.
// The decoders subtract the bias pair (exact) and take the codes into packed fp16 / bf16 arithmetic.
__device__ __forceinline__ std::uint32_t biased_code_pair(std::uint32_t x, unsigned sh, std::uint32_t mask, std::uint32_t bias) {
  std::uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(x >> sh), "r"(mask), "r"(bias));
  return r;
}

// Coordinates (head, row, group) of the t-th thread's group. Axis channel: row (channel) fastest, so a warp reads
// 32 adjacent channels of the same tokens; axis token: group fastest (contiguous channels of one token).
struct GroupCoords {
  std::int64_t h, r, gi;
};
__device__ inline GroupCoords group_of_thread(const GroupGrid& g, GroupAxis axis, std::int64_t t) {
  const std::int64_t gpr = g.groups_per_row();
  if (axis == GroupAxis::channel) {
    const std::int64_t r = t % g.rows, rest = t / g.rows;
    return {rest / gpr, r, rest % gpr};
  }
  const std::int64_t gi = t % gpr, rest = t / gpr;
  return {rest / g.rows, rest % g.rows, gi};
}


// Thread -> byte of a codes section for the byte-per-thread packers. Axis token: bytes in order (consecutive
// threads read consecutive channels). Axis channel: row-major over (byte within row, row) with the row fastest, so
// a warp packs the same token span of 32 adjacent channels (coalesced loads) instead of 32 spans of one channel.
// A byte belongs to the row of its first element, `first_byte(row)` = ceil(row * length * num / den) for streams
// of num/den bytes per element (dense b-bit: b/8; base3 trits: 1/5); release rows start on words (first byte
// row * row_bytes). Returns -1 for threads past the end or past their row's last byte.
struct ByteMap {
  GroupAxis axis;
  std::int64_t rows_total;    // heads * rows
  std::int64_t length;        // elements per row
  std::int64_t num, den;      // bytes per element = num / den (dense, base3); den == 0: release rows of row_bytes
  std::int64_t row_bytes;     // release: bytes per row
  std::int64_t total_bytes;

  __host__ __device__ std::int64_t first_byte(std::int64_t row) const {
    if (den == 0) return row * row_bytes;
    return (row * length * num + den - 1) / den;
  }
  // Threads to launch.
  std::int64_t threads() const {
    if (axis == GroupAxis::token) return total_bytes;
    const std::int64_t per_row = den == 0 ? row_bytes : (length * num + den - 1) / den + 1;
    return rows_total * per_row;
  }
  __device__ std::int64_t byte_of_thread(std::int64_t t) const {
    if (axis == GroupAxis::token) return t < total_bytes ? t : -1;
    const std::int64_t row = t % rows_total, m = t / rows_total;
    const std::int64_t b = first_byte(row) + m;
    const std::int64_t end = row + 1 < rows_total ? first_byte(row + 1) : total_bytes;
    return b < end ? b : -1;
  }
};

// ByteMap of a codes section: dense stream or release rows of `bits`-bit codes.
inline ByteMap code_byte_map(group_format::CodeLayout layout, const GroupGrid& g, GroupAxis axis, unsigned bits) {
  const std::int64_t total = static_cast<std::int64_t>(group_format::code_bytes(layout, g, bits));
  if (layout == group_format::CodeLayout::release)
    return ByteMap{axis, g.row_count(), g.length, 0, 0, group_format::release_row_words(g, bits) * 4, total};
  return ByteMap{axis, g.row_count(), g.length, static_cast<std::int64_t>(bits), 8, 0, total};
}

// n / d for 0 <= n < 2^31 and d >= 1 by a multiply and a shift (Granlund and Montgomery's round-up method, as in
// CUTLASS's FastDivmod): with l = ceil(log2 d) and m = ceil(2^(31 + l) / d), n / d = umulhi(n, m) >> (l - 1) exactly.
// A 32-bit division costs about 20 instructions and a 64-bit one a call of about 70; kernels whose per-thread work
// is a few dozen instructions spent most of it there.
struct Divider {
  unsigned d = 1, m = 0, s = 0;
  Divider() = default;
  explicit Divider(unsigned divisor) : d(divisor) {
    if (d <= 1) return;
    unsigned l = 0;
    while ((1ull << l) < d) ++l;
    m = static_cast<unsigned>(((1ull << (31 + l)) + d - 1) / d);
    s = l - 1;
  }
  __host__ __device__ unsigned div(unsigned n) const {
#ifdef __CUDA_ARCH__
    return d <= 1 ? n : (__umulhi(n, m) >> s);
#else
    return d <= 1 ? n : static_cast<unsigned>((static_cast<unsigned long long>(n) * m) >> 32) >> s;
#endif
  }
};

inline unsigned blocks_for(std::int64_t threads) { return static_cast<unsigned>((threads + kThreads - 1) / kThreads); }

// Element i of a device buffer of dtype T as fp32 (exact).
template <DType T>
__device__ inline float load(const void* p, std::int64_t i) {
  return load_as_float(p, T, static_cast<std::size_t>(i));
}

struct AlignedWordStore {
  std::uint32_t* words;
  __device__ void operator()(std::int64_t w, std::uint32_t v) const { words[w] = v; }
};
struct AlignedWordLoad {
  const std::uint32_t* words;
  __device__ std::uint32_t operator()(std::int64_t w) const { return words[w]; }
};

// The device addresses of a grouped quantizer's three sections (the plugin's *_format.h `sections`), passed to its
// encode kernels by value. sign sets mins to null where it stores none (layout dense).
using Sections = group_format::Sections<std::uint8_t>;

__host__ __device__ inline bool aligned4(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 3u) == 0; }

// Calls f(tag) with tag a std::integral_constant<DType, t>: `constexpr DType T = decltype(tag)::value;`.
template <class F>
inline void dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(std::integral_constant<DType, DType::f32>{}); break;
    case DType::f16: f(std::integral_constant<DType, DType::f16>{}); break;
    case DType::bf16: f(std::integral_constant<DType, DType::bf16>{}); break;
  }
}

// Calls f(tag) with tag a std::integral_constant<bool, b>: a kernel's compile-time flag (word runs or a byte pass)
// from a host bool, so that the launch is written once: `kernel<T, decltype(tag)::value><<<...>>>(...)`.
template <class F>
inline void dispatch_bool(bool b, F&& f) {
  if (b)
    f(std::true_type{});
  else
    f(std::false_type{});
}

}  // namespace vidkv::group_cuda
