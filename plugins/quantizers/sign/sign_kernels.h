// sign's kernel tables: every CPU implementation of sign's two stages, one entry per tier, and the one function
// that chooses among them (issue 11, the backend seam). SignQuantizer::tier goes through choose(), ::encode and
// ::decode through its two halves (choose_transform, choose_group), so the tier written to provenance.json (and,
// when inexact, to the resume fingerprint) is, by construction, the one that ran.
//
// Stage 1, the channel FFT (fft real / complex, algorithms.md 3.3; core/cpu_fft_tier.h is how a tier is requested):
//
//   transform      where                           runs when                                          vs reference
//   off            -                               fft off                                            exact
//   fftw           sign_fft.cpp (the oracle)       reference; optimized with CpuFftTier fftw, or      exact (same
//                                                  avx512 where the AVX-512 FFT does not apply        plans)
//   avx512         sign_fft_avx512.cpp             optimized, CpuFftTier avx512, fft_avx512_applies   inexact
//   fftw-batched   sign_fft_fftw_batched.cpp       optimized, CpuFftTier fftw-batched                 inexact
//
// Inexact transforms stay within the tolerances derived in sign_fft_avx512.cpp / sign_fft_tolerance.h.
//
// Stage 2, the group quantization of the values (the block, or its FFT components: `values_grid`):
//
//   group        where                                 runs when                                       bytes
//   reference    sign.cpp (the oracle)                 CpuImplementation::reference                    -
//   optimized    sign_optimized.cpp (portable loops)   optimized, where avx512 does not apply          = reference
//   avx512       sign_avx512.cpp                       optimized, sign_avx512::applies(grid, axis,     = reference
//                                                      scale dtype): axis channel, G = 32, whole groups
//   optimized / avx512 in layout fragment: the tier above in layout dense, then the codes (and the scales where
//                group-major) permuted by quantization/fragment_permute.h                               = reference
//
// The tier's name is "sign:" + group + the transform's suffix ("+fft-avx512", "+fft-fftw-batched"; none for off
// and fftw), e.g. "sign:avx512+fft-avx512"; it is exact exactly when the transform is. The CUDA side keeps its
// own choice (sign_cuda::path, sign_cuda.h: "sign:cuda", "sign:cuda+fft-tile", "sign:cuda+cufft").
#pragma once

#include <cstdint>
#include <string>

#include "vidkv/core/cpu_implementation.h"
#include "vidkv/core/quantizer.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/quantization/group_format.h"
#include "vidkv/quantization/group_kernel_entry.h"

namespace vidkv::sign_kernels {

// A transform entry. forward: `in` rows * n fp32 (one row per token) -> `out` rows * fft_components(kind, n);
// inverse: the reverse, Re of the inverse FFT divided by n (sign_fft.h). kind != off; null in the off entry.
using TransformFn = void (*)(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out);
struct Transform {
  const char* name;    // "off", "fftw", "avx512", "fftw-batched" (core/cpu_fft_tier.h's names)
  const char* suffix;  // appended to the group tier's name: "", "", "+fft-avx512", "+fft-fftw-batched"
  bool exact;          // bit-identical to the reference's transform
  TransformFn forward;
  TransformFn inverse;
};

extern const Transform transform_off;
extern const Transform transform_fftw;
extern const Transform transform_avx512;
extern const Transform transform_fftw_batched;

// A group entry, on the values to quantize. p: the plugin's parameters (validated: group >= 1); g: the grid over
// the values (values_grid). encode: `values` [heads, tokens, width] fp32 row-major, host, finite; `out` the
// sign_format sections (codes | scales [| zero mins in layout release]), sign_format's byte counts for g, zeroed
// by the caller. decode: `in` those bytes, `values` g.elements() fp32.
using CpuKernels = group_format::CpuKernelEntry<SignParams>;  // tier: "reference", "optimized", "avx512"

extern const CpuKernels reference;
extern const CpuKernels optimized;
extern const CpuKernels avx512;
extern const CpuKernels optimized_fragment;  // layout fragment through optimized in layout dense
extern const CpuKernels avx512_fragment;     // layout fragment through avx512 in layout dense

// The grid over the quantized values of a [heads, tokens, channels] block: width channels (fft off) or
// fft_components(p.fft, channels).
group_format::GroupGrid values_grid(const SignParams& p, const BlockShape& shape);

// What runs for one block: a transform and a group entry.
struct Choice {
  const Transform* transform;
  const CpuKernels* group;
  // "sign:" + group tier + transform suffix; exact when the transform is (every group entry is exact).
  KernelTier tier() const;
};

// The transform for `implementation`: off for fft off; fftw for the reference; else the tier in force
// (cpu_fft_tier(), read at every call), avx512 falling back to fftw where fft_avx512_applies(kind, n) is false.
const Transform& choose_transform(CpuImplementation implementation, SignFft kind, std::int64_t n);
// The group entry for `implementation` on values grid `g`: reference, or avx512 where sign_avx512::applies, else
// optimized.
const CpuKernels& choose_group(CpuImplementation implementation, const SignParams& p, const group_format::GroupGrid& g);
// Both, for a block of `shape`. The only place that chooses.
Choice choose(CpuImplementation implementation, const SignParams& p, const BlockShape& shape);

// The implementations behind the group entries: the scalar reference (sign.cpp) and the portable optimised loops
// (sign_optimized.cpp); the AVX-512 entry wraps sign_avx512::encode / decode.
void encode_reference(const SignParams& p, const group_format::GroupGrid& g, const float* values, std::uint8_t* out);
void decode_reference(const SignParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* values);
void encode_optimized(const SignParams& p, const group_format::GroupGrid& g, const float* values, std::uint8_t* out);
void decode_optimized(const SignParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* values);

}  // namespace vidkv::sign_kernels
