// ternary's kernel table: every implementation of ternary's block encode / decode, one entry per tier, and the one
// function that chooses among them (issue 11, the backend seam). TernaryQuantizer::encode, ::decode and ::tier all
// go through choose(), so the tier written to provenance.json is, by construction, the one that ran.
//
//   tier        where                                   runs when                                        bytes
//   reference   ternary.cpp (the oracle)                CpuImplementation::reference                     -
//   optimized   ternary_optimized.cpp (portable loops)  optimized, where avx512 does not apply            = reference
//   avx512      ternary_avx512.cpp                      optimized, ternary_avx512::applies(grid, axis,   = reference
//                                                       reconstruction, packing): axis channel, G = 32,
//                                                       whole groups, magnitude_free, base3 or slots2
//   optimized / avx512 with packing fragment: the tier above in packing slots2, then the slots (and the scales where
//               group-major) permuted by quantization/fragment_permute.h                                 = reference
//   cuda        ternary.cu through ternary_cuda.h       device cuda (Quantizer::encode_view)             = reference
//
// The CPU entries share one signature. p: the plugin's parameters (validated: group >= 1, gamma in [0, 4]); g: p's
// grid of the block (group_format::make_group_grid). encode: `in` the block [heads, tokens, channels] fp32
// row-major, host, finite; `out` the ternary_format sections (codes | scales when used or in release | mins in
// release), ternary_format's byte counts for g, zeroed by the caller. decode: `in` those bytes, `out` the block's
// g.elements() fp32 values. The CUDA entry keeps its own signature (device views, a stream: ternary_cuda.h).
#pragma once

#include <cstdint>

#include "vidkv/core/cpu_implementation.h"
#include "vidkv/plugins/quantizers/ternary/ternary.h"
#include "vidkv/quantization/group_format.h"
#include "vidkv/quantization/group_kernel_entry.h"

namespace vidkv::ternary_kernels {

// One CPU tier. `tier` is the suffix of KernelTier::name ("ternary:" + tier).
using CpuKernels = group_format::CpuKernelEntry<TernaryParams>;

// The entries (ternary_kernels.cpp).
extern const CpuKernels reference;
extern const CpuKernels optimized;
extern const CpuKernels avx512;
extern const CpuKernels optimized_fragment;  // packing fragment through optimized in slots2
extern const CpuKernels avx512_fragment;     // packing fragment through avx512 in slots2

// The CPU tier that runs for `implementation` on grid `g`: reference, or avx512 where the AVX-512 kernels take this
// configuration (axis, reconstruction, packing, grid) on this processor (ternary_avx512::applies), else optimized.
// The only place that chooses.
const CpuKernels& choose(CpuImplementation implementation, const TernaryParams& p, const group_format::GroupGrid& g);

// The implementations behind the entries: the scalar reference (ternary.cpp) and the portable optimised loops
// (ternary_optimized.cpp); the AVX-512 entry wraps ternary_avx512::encode / decode.
void encode_reference(const TernaryParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out);
void decode_reference(const TernaryParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out);
void encode_optimized(const TernaryParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out);
void decode_optimized(const TernaryParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out);

}  // namespace vidkv::ternary_kernels
