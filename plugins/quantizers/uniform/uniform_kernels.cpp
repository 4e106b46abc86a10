// uniform's kernel table and the one choice among its CPU tiers (uniform_kernels.h).
#include "vidkv/plugins/quantizers/uniform/uniform_kernels.h"

#include <cstring>
#include <vector>

#include "vidkv/plugins/quantizers/uniform/uniform_avx512.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"

namespace vidkv::uniform_kernels {

namespace {
void encode_avx512(const UniformParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  uniform_avx512::encode(in, g, p.axis, static_cast<unsigned>(p.bits), p.scale_dtype, p.layout, out);
}
void decode_avx512(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  uniform_avx512::decode(in, g, p.axis, static_cast<unsigned>(p.bits), p.scale_dtype, p.layout, out);
}

// Layout fragment through a dense-layout tier: every section has the same size in both layouts, so the tier codes the
// block in layout dense and the codes are permuted after (encode) or before (decode, into a copy: the input is
// const) by group_format's permutations, and so are the scales and mins where the layout stores them group-major
// (group_format::group_major_meta: channel-axis grids with a whole tile).
template <void (*Encode)(const UniformParams&, const group_format::GroupGrid&, const float*, std::uint8_t*)>
void encode_fragment(const UniformParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  UniformParams dense = p;
  dense.layout = group_format::CodeLayout::dense;
  Encode(dense, g, in, out);
  if (group_format::fragment_all_tail(g)) return;  // dense's bytes already
  const std::size_t n = group_format::code_bytes(group_format::CodeLayout::dense, g, 2);
  const std::size_t total = uniform_format::total_bytes(group_format::CodeLayout::dense, g, 2, p.scale_dtype);
  const std::vector<std::uint8_t> dense_bytes(out, out + (group_format::group_major_meta(p.layout, g) ? total : n));
  group_format::fragment_from_dense(g, dense_bytes.data(), out);
  if (group_format::group_major_meta(p.layout, g))  // scales, then mins
    group_format::permute_group_major_meta(g, dtype_size(p.scale_dtype), 2, dense_bytes.data() + n, out + n, true);
}
template <void (*Decode)(const UniformParams&, const group_format::GroupGrid&, const std::uint8_t*, float*)>
void decode_fragment(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  UniformParams dense = p;
  dense.layout = group_format::CodeLayout::dense;
  if (group_format::fragment_all_tail(g)) return Decode(dense, g, in, out);  // dense's bytes as they are
  const std::size_t total = uniform_format::total_bytes(group_format::CodeLayout::dense, g, 2, p.scale_dtype);
  const std::size_t n = group_format::code_bytes(group_format::CodeLayout::dense, g, 2);
  std::vector<std::uint8_t> bytes(total);
  group_format::dense_from_fragment(g, in, bytes.data());
  if (group_format::group_major_meta(p.layout, g)) {  // scales, then mins
    group_format::permute_group_major_meta(g, dtype_size(p.scale_dtype), 2, in + n, bytes.data() + n, false);
  } else {
    std::memcpy(bytes.data() + n, in + n, total - n);
  }
  Decode(dense, g, bytes.data(), out);
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
