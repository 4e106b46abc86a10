// sign's kernel tables and the one choice among its CPU tiers (sign_kernels.h).
#include "vidkv/plugins/quantizers/sign/sign_kernels.h"

#include "vidkv/core/cpu_fft_tier.h"
#include "vidkv/plugins/quantizers/sign/sign_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_avx512.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_fftw_batched.h"
#include "vidkv/quantization/fragment_permute.h"

namespace vidkv::sign_kernels {

namespace {
void encode_avx512(const SignParams& p, const group_format::GroupGrid& g, const float* values, std::uint8_t* out) {
  sign_avx512::encode(values, g, p.scale_dtype, p.layout, out);
}
void decode_avx512(const SignParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* values) {
  sign_avx512::decode(in, g, p.scale_dtype, p.layout, p.reconstruction, values);
}

// Layout fragment through a dense-layout group tier: the tier codes the values in layout dense and fragment_permute
// moves the codes after (encode) or before (decode, into a copy), and the scales where they are group-major.
fragment_permute::BlockSections fragment_sections(const SignParams& p, const group_format::GroupGrid& g) {
  return {g, group_format::fragment_form(g, sign_format::kBits), dtype_size(p.scale_dtype), 1};
}
SignParams as_dense(const SignParams& p) {
  SignParams d = p;
  d.layout = group_format::CodeLayout::dense;
  return d;
}
template <void (*Encode)(const SignParams&, const group_format::GroupGrid&, const float*, std::uint8_t*)>
void encode_fragment(const SignParams& p, const group_format::GroupGrid& g, const float* values, std::uint8_t* out) {
  fragment_permute::encode_through_dense<SignParams, Encode>(as_dense(p), fragment_sections(p, g), values, out);
}
template <void (*Decode)(const SignParams&, const group_format::GroupGrid&, const std::uint8_t*, float*)>
void decode_fragment(const SignParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* values) {
  const std::size_t total = sign_format::total_bytes(group_format::CodeLayout::dense, g, p.scale_dtype);
  fragment_permute::decode_through_dense<SignParams, Decode>(as_dense(p), fragment_sections(p, g), total, in, values);
}
}  // namespace

constinit const Transform transform_off{"off", "", true, nullptr, nullptr};
constinit const Transform transform_fftw{"fftw", "", true, fft_forward_rows, fft_inverse_rows};
constinit const Transform transform_avx512{"avx512", "+fft-avx512", false, fft_forward_rows_avx512,
                                           fft_inverse_rows_avx512};
constinit const Transform transform_fftw_batched{"fftw-batched", "+fft-fftw-batched", false,
                                                 fft_forward_rows_fftw_batched, fft_inverse_rows_fftw_batched};

constinit const CpuKernels reference{"reference", encode_reference, decode_reference};
constinit const CpuKernels optimized{"optimized", encode_optimized, decode_optimized};
constinit const CpuKernels avx512{"avx512", encode_avx512, decode_avx512};
constinit const CpuKernels optimized_fragment{"optimized", encode_fragment<encode_optimized>, decode_fragment<decode_optimized>};
constinit const CpuKernels avx512_fragment{"avx512", encode_fragment<encode_avx512>, decode_fragment<decode_avx512>};

group_format::GroupGrid values_grid(const SignParams& p, const BlockShape& shape) {
  return group_format::grid_of(p, shape, fft_components(p.fft, shape.channels));  // n when fft off
}

KernelTier Choice::tier() const {
  return {std::string("sign:") + group->tier + transform->suffix, transform->exact};
}

const Transform& choose_transform(CpuImplementation implementation, SignFft kind, std::int64_t n) {
  if (kind == SignFft::off) return transform_off;
  if (implementation == CpuImplementation::reference) return transform_fftw;
  switch (cpu_fft_tier()) {
    case CpuFftTier::fftw_batched: return transform_fftw_batched;
    case CpuFftTier::fftw: return transform_fftw;
    case CpuFftTier::avx512: break;
  }
  return fft_avx512_applies(kind, n) ? transform_avx512 : transform_fftw;
}

const CpuKernels& choose_group(CpuImplementation implementation, const SignParams& p, const group_format::GroupGrid& g) {
  if (implementation == CpuImplementation::reference) return reference;
  const bool simd = sign_avx512::applies(g, p.axis, p.scale_dtype);
  if (p.layout == group_format::CodeLayout::fragment) return simd ? avx512_fragment : optimized_fragment;
  return simd ? avx512 : optimized;
}

Choice choose(CpuImplementation implementation, const SignParams& p, const BlockShape& shape) {
  return Choice{&choose_transform(implementation, p.fft, shape.channels),
                &choose_group(implementation, p, values_grid(p, shape))};
}

}  // namespace vidkv::sign_kernels
