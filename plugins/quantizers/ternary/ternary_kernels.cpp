// ternary's kernel table and the one choice among its CPU tiers (ternary_kernels.h).
#include "vidkv/plugins/quantizers/ternary/ternary_kernels.h"

#include "vidkv/plugins/quantizers/ternary/ternary_avx512.h"
#include "vidkv/quantization/fragment_permute.h"

namespace vidkv::ternary_kernels {

namespace {
// The AVX-512 kernels take magnitude_free base3 / slots2 only: the codes section is the whole output.
void encode_avx512(const TernaryParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  ternary_avx512::encode(in, g, p.gamma, p.packing, out);
}
void decode_avx512(const TernaryParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  ternary_avx512::decode(in, g, p.packing, out);
}

// Packing fragment through a slots2 tier: the tier codes the block in packing slots2 and fragment_permute moves the
// slots after (encode) or before (decode, into a copy), and the scales where they are group-major.
fragment_permute::BlockSections fragment_sections(const TernaryParams& p, const group_format::GroupGrid& g) {
  return {g, ternary_format::kFragmentForm, dtype_size(p.scale_dtype),
          ternary_format::has_scales(p.packing, p.reconstruction) ? 1 : 0};
}
TernaryParams as_slots2(const TernaryParams& p) {
  TernaryParams s = p;
  s.packing = ternary_format::Packing::slots2;
  return s;
}
template <void (*Encode)(const TernaryParams&, const group_format::GroupGrid&, const float*, std::uint8_t*)>
void encode_fragment(const TernaryParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  fragment_permute::encode_through_dense<TernaryParams, Encode>(as_slots2(p), fragment_sections(p, g), in, out);
}
template <void (*Decode)(const TernaryParams&, const group_format::GroupGrid&, const std::uint8_t*, float*)>
void decode_fragment(const TernaryParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  const std::size_t total = ternary_format::total_bytes(p.packing, p.reconstruction, g, p.scale_dtype);
  fragment_permute::decode_through_dense<TernaryParams, Decode>(as_slots2(p), fragment_sections(p, g), total, in, out);
}
}  // namespace

constinit const CpuKernels reference{"reference", encode_reference, decode_reference};
constinit const CpuKernels optimized{"optimized", encode_optimized, decode_optimized};
constinit const CpuKernels avx512{"avx512", encode_avx512, decode_avx512};
constinit const CpuKernels optimized_fragment{"optimized", encode_fragment<encode_optimized>, decode_fragment<decode_optimized>};
constinit const CpuKernels avx512_fragment{"avx512", encode_fragment<encode_avx512>, decode_fragment<decode_avx512>};

const CpuKernels& choose(CpuImplementation implementation, const TernaryParams& p, const group_format::GroupGrid& g) {
  if (implementation == CpuImplementation::reference) return reference;
  if (p.packing == ternary_format::Packing::fragment)  // a slots2 tier, then the permutation
    return ternary_avx512::applies(g, p.axis, p.reconstruction, ternary_format::Packing::slots2) ? avx512_fragment
                                                                                                 : optimized_fragment;
  return ternary_avx512::applies(g, p.axis, p.reconstruction, p.packing) ? avx512 : optimized;
}

}  // namespace vidkv::ternary_kernels
