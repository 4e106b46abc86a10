// uniform's kernel table and the one choice among its CPU tiers (uniform_kernels.h).
#include "vidkv/plugins/quantizers/uniform/uniform_kernels.h"

#include "vidkv/plugins/quantizers/uniform/uniform_avx512.h"

namespace vidkv::uniform_kernels {

namespace {
void encode_avx512(const UniformParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  uniform_avx512::encode(in, g, p.axis, static_cast<unsigned>(p.bits), p.scale_dtype, p.layout, out);
}
void decode_avx512(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  uniform_avx512::decode(in, g, p.axis, static_cast<unsigned>(p.bits), p.scale_dtype, p.layout, out);
}
}  // namespace

constinit const CpuKernels reference{"reference", encode_reference, decode_reference};
constinit const CpuKernels optimized{"optimized", encode_optimized, decode_optimized};
constinit const CpuKernels avx512{"avx512", encode_avx512, decode_avx512};

const CpuKernels& choose(CpuImplementation implementation, const UniformParams& p, const group_format::GroupGrid& g) {
  if (implementation == CpuImplementation::reference) return reference;
  return uniform_avx512::applies(g, static_cast<unsigned>(p.bits), p.scale_dtype) ? avx512 : optimized;
}

}  // namespace vidkv::uniform_kernels
