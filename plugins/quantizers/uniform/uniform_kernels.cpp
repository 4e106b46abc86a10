// uniform's kernel table and the one choice among its CPU tiers (uniform_kernels.h).
#include "vidkv/plugins/quantizers/uniform/uniform_kernels.h"

#include "vidkv/plugins/quantizers/uniform/uniform_avx512.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/quantization/fragment_permute.h"

namespace vidkv::uniform_kernels {

namespace {
void encode_avx512(const UniformParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  uniform_avx512::encode(in, g, p.axis, static_cast<unsigned>(p.bits), p.scale_dtype, p.layout, out);
}
void decode_avx512(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  uniform_avx512::decode(in, g, p.axis, static_cast<unsigned>(p.bits), p.scale_dtype, p.layout, out);
}

// Layout fragment through a dense-layout tier: the tier codes the block in layout dense and fragment_permute moves the
// codes after (encode) or before (decode, into a copy: the input is const), and the scales and mins where the layout
// stores them group-major.
fragment_permute::BlockSections fragment_sections(const UniformParams& p, const group_format::GroupGrid& g) {
  return {g, group_format::fragment_form(g, static_cast<unsigned>(p.bits)), dtype_size(p.scale_dtype), 2};
}
UniformParams as_dense(const UniformParams& p) {
  UniformParams d = p;
  d.layout = group_format::CodeLayout::dense;
  return d;
}
template <void (*Encode)(const UniformParams&, const group_format::GroupGrid&, const float*, std::uint8_t*)>
void encode_fragment(const UniformParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  fragment_permute::encode_through_dense<UniformParams, Encode>(as_dense(p), fragment_sections(p, g), in, out);
}
template <void (*Decode)(const UniformParams&, const group_format::GroupGrid&, const std::uint8_t*, float*)>
void decode_fragment(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  const std::size_t total = uniform_format::total_bytes(group_format::CodeLayout::dense, g, static_cast<unsigned>(p.bits),
                                                        p.scale_dtype);
  fragment_permute::decode_through_dense<UniformParams, Decode>(as_dense(p), fragment_sections(p, g), total, in, out);
}
}  // namespace

constinit const CpuKernels reference{"reference", encode_reference, decode_reference};
constinit const CpuKernels optimized{"optimized", encode_optimized, decode_optimized};
constinit const CpuKernels avx512{"avx512", encode_avx512, decode_avx512};
constinit const CpuKernels optimized_fragment{"optimized", encode_fragment<encode_optimized>, decode_fragment<decode_optimized>};
constinit const CpuKernels avx512_fragment{"avx512", encode_fragment<encode_avx512>, decode_fragment<decode_avx512>};

const CpuKernels& choose(CpuImplementation implementation, const UniformParams& p, const group_format::GroupGrid& g) {
  if (implementation == CpuImplementation::reference) return reference;
  const bool simd = uniform_avx512::applies(g, static_cast<unsigned>(p.bits), p.scale_dtype);
  if (p.layout == group_format::CodeLayout::fragment) return simd ? avx512_fragment : optimized_fragment;
  return simd ? avx512 : optimized;
}

}  // namespace vidkv::uniform_kernels
