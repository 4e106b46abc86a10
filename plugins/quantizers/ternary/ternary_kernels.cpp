// ternary's kernel table and the one choice among its CPU tiers (ternary_kernels.h).
#include "vidkv/plugins/quantizers/ternary/ternary_kernels.h"

#include "vidkv/plugins/quantizers/ternary/ternary_avx512.h"

namespace vidkv::ternary_kernels {

namespace {
// The AVX-512 kernels take magnitude_free base3 / slots2 only: the codes section is the whole output.
void encode_avx512(const TernaryParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  ternary_avx512::encode(in, g, p.gamma, p.packing, out);
}
void decode_avx512(const TernaryParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  ternary_avx512::decode(in, g, p.packing, out);
}
}  // namespace

constinit const CpuKernels reference{"reference", encode_reference, decode_reference};
constinit const CpuKernels optimized{"optimized", encode_optimized, decode_optimized};
constinit const CpuKernels avx512{"avx512", encode_avx512, decode_avx512};

const CpuKernels& choose(CpuImplementation implementation, const TernaryParams& p, const group_format::GroupGrid& g) {
  if (implementation == CpuImplementation::reference) return reference;
  return ternary_avx512::applies(g, p.axis, p.reconstruction, p.packing) ? avx512 : optimized;
}

}  // namespace vidkv::ternary_kernels
