// uniform's kernel table: every implementation of uniform's block encode / decode, one entry per tier, and the one
// function that chooses among them (issue 11, the backend seam). UniformQuantizer::encode, ::decode and ::tier all
// go through choose(), so the tier written to provenance.json is, by construction, the one that ran.
//
//   tier        where                                   runs when                                        bytes
//   reference   uniform.cpp (the oracle)                CpuImplementation::reference                     -
//   optimized   uniform_optimized.cpp (portable loops)  optimized, where avx512 does not apply            = reference
//   avx512      uniform_avx512.cpp                      optimized, uniform_avx512::applies(grid, ...)    = reference
//   (layout fragment: the optimized or avx512 tier codes in layout dense, the codes (and group-major metadata)
//    permuted after / before:
//    optimized_fragment, avx512_fragment, under the same tier names)
//   cuda        uniform.cu through uniform_cuda.h       device cuda (Quantizer::encode_view)             = reference
//
// The CPU entries share one signature. p: the plugin's parameters (validated: bits 1..8, group >= 1, release only
// with bits in {1, 2, 4, 8}); g: p's grid of the block (group_format::make_group_grid). encode: `in` the block
// [heads, tokens, channels] fp32 row-major, host, finite; `out` the uniform_format sections (codes | scales | mins),
// uniform_format's byte counts for g, the codes section zeroed by the caller. decode: `in` those bytes, `out` the
// block's g.elements() fp32 values. The CUDA entry keeps its own signature (device views, a stream: uniform_cuda.h).
#pragma once

#include <cstdint>

#include "vidkv/core/cpu_implementation.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"
#include "vidkv/quantization/group_format.h"
#include "vidkv/quantization/group_kernel_entry.h"

namespace vidkv::uniform_kernels {

// One CPU tier. `tier` is the suffix of KernelTier::name ("uniform:" + tier).
using CpuKernels = group_format::CpuKernelEntry<UniformParams>;

// The entries (uniform_kernels.cpp).
extern const CpuKernels reference;
extern const CpuKernels optimized;
extern const CpuKernels avx512;
extern const CpuKernels optimized_fragment;
extern const CpuKernels avx512_fragment;

// The CPU tier that runs for `implementation` on grid `g`: reference, or avx512 where the AVX-512 kernels take this
// configuration on this processor (uniform_avx512::applies), else optimized. The only place that chooses.
const CpuKernels& choose(CpuImplementation implementation, const UniformParams& p, const group_format::GroupGrid& g);

// The implementations behind the entries: the scalar reference (uniform.cpp) and the portable optimised loops
// (uniform_optimized.cpp); the AVX-512 entry wraps uniform_avx512::encode / decode.
void encode_reference(const UniformParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out);
void decode_reference(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out);
void encode_optimized(const UniformParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out);
void decode_optimized(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out);

}  // namespace vidkv::uniform_kernels
