// Vectorised element loads and stores of the CUDA fast paths (fp32, fp16, bf16), with the hardware conversions:
// fp16/bf16 -> fp32 is exact; fp32 -> fp16 (__float2half_rn) and -> bf16 (__float2bfloat16_rn) round to nearest
// even with IEEE overflow, the same bits as core/dtype.h's float_to_half_bits / float_to_bf16_bits for finite
// values. CUDA sources only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "vidkv/core/dtype.h"

namespace vidkv::group_cuda {

// Two adjacent elements i, i + 1 (i even; the buffer aligned to 2 elements).
template <DType T>
__device__ inline float2 load2(const void* p, std::int64_t i) {
  if constexpr (T == DType::f32) {
    return reinterpret_cast<const float2*>(p)[i / 2];
  } else if constexpr (T == DType::f16) {
    return __half22float2(reinterpret_cast<const __half2*>(p)[i / 2]);
  } else {
    return __bfloat1622float2(reinterpret_cast<const __nv_bfloat162*>(p)[i / 2]);
  }
}

template <DType T>
__device__ inline void store2(void* p, std::int64_t i, float a, float b) {
  if constexpr (T == DType::f32) {
    reinterpret_cast<float2*>(p)[i / 2] = make_float2(a, b);
  } else if constexpr (T == DType::f16) {
    reinterpret_cast<__half2*>(p)[i / 2] = __halves2half2(__float2half_rn(a), __float2half_rn(b));
  } else {
    reinterpret_cast<__nv_bfloat162*>(p)[i / 2] = __halves2bfloat162(__float2bfloat16_rn(a), __float2bfloat16_rn(b));
  }
}

// 32 consecutive elements starting at i (i a multiple of 32; the buffer 16-byte aligned), as 16-byte loads.
template <DType T>
__device__ inline void load32(const void* p, std::int64_t i, float (&x)[32]) {
  if constexpr (T == DType::f32) {
    const float4* v = reinterpret_cast<const float4*>(p) + i / 4;
    float4 r[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) r[k] = v[k];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      x[4 * k] = r[k].x;
      x[4 * k + 1] = r[k].y;
      x[4 * k + 2] = r[k].z;
      x[4 * k + 3] = r[k].w;
    }
  } else {
    const uint4* v = reinterpret_cast<const uint4*>(p) + i / 8;
    uint4 r[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) r[k] = v[k];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const unsigned w[4] = {r[k].x, r[k].y, r[k].z, r[k].w};
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        const std::uint16_t lo = static_cast<std::uint16_t>(w[m] & 0xffffu), hi = static_cast<std::uint16_t>(w[m] >> 16);
        if constexpr (T == DType::f16) {
          x[8 * k + 2 * m] = __half2float(__ushort_as_half(lo));
          x[8 * k + 2 * m + 1] = __half2float(__ushort_as_half(hi));
        } else {
          x[8 * k + 2 * m] = __uint_as_float(static_cast<unsigned>(lo) << 16);
          x[8 * k + 2 * m + 1] = __uint_as_float(static_cast<unsigned>(hi) << 16);
        }
      }
    }
  }
}

template <DType T>
__device__ inline std::uint16_t to_bits16(float v) {
  if constexpr (T == DType::f16) {
    return __half_as_ushort(__float2half_rn(v));
  } else {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  }
}

// Stores 32 consecutive elements at i (i a multiple of 32; 16-byte aligned buffer) as 16-byte stores.
template <DType T>
__device__ inline void store32(void* p, std::int64_t i, const float (&x)[32]) {
  if constexpr (T == DType::f32) {
    float4* v = reinterpret_cast<float4*>(p) + i / 4;
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = make_float4(x[4 * k], x[4 * k + 1], x[4 * k + 2], x[4 * k + 3]);
  } else {
    uint4* v = reinterpret_cast<uint4*>(p) + i / 8;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      unsigned w[4];
#pragma unroll
      for (int m = 0; m < 4; ++m)
        w[m] = static_cast<unsigned>(to_bits16<T>(x[8 * k + 2 * m])) | (static_cast<unsigned>(to_bits16<T>(x[8 * k + 2 * m + 1])) << 16);
      v[k] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// Two adjacent elements kept as loaded (fp16/bf16: one 32-bit register for the pair; fp32: a float2), converted
// to fp32 where used: halves the registers of the channel-axis kernels, which hold a whole group of 32 tokens.
template <DType T>
struct RawPair {
  using type = std::uint32_t;
};
template <>
struct RawPair<DType::f32> {
  using type = float2;
};

template <DType T>
__device__ inline typename RawPair<T>::type load_raw2(const void* p, std::int64_t i) {
  if constexpr (T == DType::f32) {
    return reinterpret_cast<const float2*>(p)[i / 2];
  } else {
    return reinterpret_cast<const std::uint32_t*>(p)[i / 2];
  }
}

template <DType T>
__device__ inline float2 raw2_to_float2(typename RawPair<T>::type r) {
  if constexpr (T == DType::f32) {
    return r;
  } else if constexpr (T == DType::f16) {
    return __half22float2(*reinterpret_cast<const __half2*>(&r));
  } else {
    return make_float2(__uint_as_float(r << 16), __uint_as_float(r & 0xffff0000u));
  }
}

// Eight consecutive elements at i (i a multiple of 8; the buffer 16-byte aligned).
template <DType T>
__device__ inline void load8(const void* p, std::int64_t i, float (&x)[8]) {
  if constexpr (T == DType::f32) {
    const float4 a = reinterpret_cast<const float4*>(p)[i / 4], b = reinterpret_cast<const float4*>(p)[i / 4 + 1];
    x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w; x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
  } else {
    const uint4 v = reinterpret_cast<const uint4*>(p)[i / 8];
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      const float2 f = raw2_to_float2<T>(w[m]);
      x[2 * m] = f.x;
      x[2 * m + 1] = f.y;
    }
  }
}

template <DType T>
__device__ inline void store8(void* p, std::int64_t i, const float (&x)[8]) {
  if constexpr (T == DType::f32) {
    reinterpret_cast<float4*>(p)[i / 4] = make_float4(x[0], x[1], x[2], x[3]);
    reinterpret_cast<float4*>(p)[i / 4 + 1] = make_float4(x[4], x[5], x[6], x[7]);
  } else {
    unsigned w[4];
#pragma unroll
    for (int m = 0; m < 4; ++m)
      w[m] = static_cast<unsigned>(to_bits16<T>(x[2 * m])) | (static_cast<unsigned>(to_bits16<T>(x[2 * m + 1])) << 16);
    reinterpret_cast<uint4*>(p)[i / 8] = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// A metadata scalar (fp16 / bf16 / fp32) at index i of a section aligned to its element size.
__device__ inline void store_scalar(std::uint8_t* section, std::int64_t i, DType t, float v) {
  if (t == DType::f32) {
    reinterpret_cast<float*>(section)[i] = v;
  } else {
    reinterpret_cast<std::uint16_t*>(section)[i] = t == DType::f16 ? __half_as_ushort(__float2half_rn(v))
                                                                   : __bfloat16_as_ushort(__float2bfloat16_rn(v));
  }
}
__device__ inline float load_scalar(const std::uint8_t* section, std::int64_t i, DType t) {
  if (t == DType::f32) return reinterpret_cast<const float*>(section)[i];
  const std::uint16_t b = reinterpret_cast<const std::uint16_t*>(section)[i];
  return t == DType::f16 ? __half2float(__ushort_as_half(b)) : __uint_as_float(static_cast<unsigned>(b) << 16);
}

inline bool aligned(const void* p, unsigned bytes) { return (reinterpret_cast<std::uintptr_t>(p) % bytes) == 0; }

}  // namespace vidkv::group_cuda
