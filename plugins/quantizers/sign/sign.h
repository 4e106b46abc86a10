// sign: VidKV's "1-bit" quantizer, a sign bit per value with a mean-magnitude scale per group, optionally applied
// to the channel-axis FFT of each token (the normal key channels). algorithms.md 2.2 and 3.3; paper arXiv
// 2503.16257 Eq. 5 and Sec. 3.2 (FFT).
//
// Per group of G values along `axis`: s = mean |x| (accumulated in double, rounded to scale_dtype, saturated to its
// finite range (fp16 65504, never inf), and stored);
// bit = 1 if x >= 0 else 0. Reconstruction zero_one (paper and release): bit 1 -> s, bit 0 -> 0; symmetric: +-s.
// fft complex / real: per token, the unnormalised forward FFT along ALL channels of the block given to this
// quantizer (a composite gathers the normal channels first), laid out as in sign_fft.h (complex: 2n interleaved
// Re/Im reals, the release's; real: n reals [Re X0, Re X1, Im X1, ..., (Re X(n/2))]); the components are then
// quantized as if they were channels (axis channel: a group is G consecutive tokens of one component) and decode
// rebuilds them, applies the inverse FFT divided by n and keeps the real part. Any n (FFTW, fp32).
// Tail rule as in group_format.h: the last group of a row holds the remaining n mod G values, own scale.
//
// CUDA (sign_cuda.h, sign.cu): fft off writes the reference's bytes; with the FFT, power-of-two n in [16, 128] with
// word-aligned groups run fused tile kernels that perform the AVX-512 transform's operations (the CPU optimised
// path's bits; bound fft_avx512_error_factor, sign_fft_avx512.cpp), other shapes cuFFT R2C / C2R with cached plans
// (bound sign_fft_tolerance.h); both FFT tiers are inexact against the reference (FFTW).
//
// Differences from the release: fp32 FFT for any n (the release uses a half-precision power-of-two GPU FFT);
// the real-FFT variant and the symmetric reconstruction are additions; layout dense drops the release's zero min.
//
// Packed layout (sign_format.h), V = values quantized = elements (fft off, real) or 2 * elements (complex):
//   codes       dense: one bitstream, 1 bit per value, order head, row, position; release: uint32 words per row;
//               fragment: dense's bits permuted into group_format.h's fragment layout (1-bit codes, the operand by the
//               axis: keys on the channel axis; a multiple of 64 values per token)
//   scales      one scale_dtype per group (layout fragment with a whole 32-token tile on the channel axis:
//               group-major, group_format::group_major_meta)
//   zero_points layout release only: one scale_dtype 0 per group (stored, never read, as the release does)
// effective bits (G divides the axis, fp16) = (V / elements) * (1 + 16/G [+ 16/G release]):
//   dense and fragment 1.5 (off, real), 3.0 (complex); release 2.0 (off, real), 4.0 (complex, the release's 1-bit FFT channel).
#pragma once

#include "vidkv/core/cpu_implementation.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/quantization/group_format.h"
#include "vidkv/quantization/group_params.h"
#include "vidkv/quantization/grouped_quantizer.h"

namespace vidkv {

struct SignParams {
  int group = 32;
  group_format::GroupAxis axis = group_format::GroupAxis::channel;
  sign_format::Reconstruction reconstruction = sign_format::Reconstruction::zero_one;
  SignFft fft = SignFft::off;
  DType scale_dtype = DType::f16;
  group_format::CodeLayout layout = group_format::CodeLayout::dense;

  template <class B>
  static void bind(B& b) {
    using sign_format::Reconstruction;
    group_params::bind_group(b, &SignParams::group);
    group_params::bind_axis(b, &SignParams::axis,
                            "channel: a group is G consecutive tokens of one channel (or FFT component); "
                            "token: G consecutive channels");
    b.choice("reconstruction", &SignParams::reconstruction,
             std::vector<std::pair<std::string, Reconstruction>>{{"zero_one", Reconstruction::zero_one},
                                                                 {"symmetric", Reconstruction::symmetric}},
             "zero_one: bit 1 -> s, bit 0 -> 0 (paper, release); symmetric: bit 0 -> -s");
    b.choice("fft", &SignParams::fft,
             std::vector<std::pair<std::string, SignFft>>{{"off", SignFft::off}, {"complex", SignFft::complex}, {"real", SignFft::real}},
             "quantize the per-token channel-axis FFT: complex (release, 2n reals) or real (n/2+1 bins, n reals)");
    group_params::bind_scale_dtype(b, &SignParams::scale_dtype,
                                   "storage type of each group's scale (and of the release's zero min)");
    group_params::bind_layout(b, &SignParams::layout,
                              "dense: bitstream + scales; release: uint32 words per row + scale + zero min per group; "
                              "fragment: dense's bytes in the order of decode attention's MMA operands (a multiple of 64 "
                              "values per token)",
                              /*with_fragment=*/true);
  }
};

// The grouped quantizer's skeleton (grouped_quantizer.h) with sign's own encode / decode / tier: the FFT stage
// around the group stage.
class SignQuantizer : public GroupedQuantizer<SignParams> {
 public:
  using Params = SignParams;
  explicit SignQuantizer(const Params& params, CpuImplementation implementation = CpuImplementation::optimized);

  PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const override;
  void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const override;
  void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx, float* out) const override;
  // encode, decode and tier run / name the pair of tiers (transform, group) that sign_kernels::choose picks
  // (sign_kernels.h: the tables of implementations and when each runs; encode / decode take its two halves,
  // choose_transform and cpu_kernels = choose_group).
  // cpu: "sign:reference", "sign:optimized" / "sign:avx512", with the optimised FFT tiers' suffix "+fft-avx512" or
  // "+fft-fftw-batched" (inexact; exact without a suffix: fft off or FFTW's per-row plans);
  // cuda (sign_cuda.h): "sign:cuda" (fft off, exact), "sign:cuda+fft-tile" (power-of-two n in [16, 128] with
  // word-aligned groups, inexact: the AVX-512 transform's bits) or "sign:cuda+cufft" (other shapes, inexact).
  KernelTier tier(Device device, const BlockShape& shape) const override;
  // cuda with fft on: refused for FFT lengths with a prime factor above 127 (cuFFT's Bluestein path). Measured on an
  // H200 (n = 131, 16 tokens): an all-zero token came back with nonzero components next to a constant token, so the
  // per-token bound of sign_fft_tolerance.h does not hold there; the cpu backend (FFTW) handles every n.
  bool supports(Device device, const BlockShape& shape, std::string* why = nullptr) const override;

#ifdef VIDKV_WITH_CUDA
  // For composites, without a gather / scatter pass: encode channels index[0..k) (k int32 on the device, each < C)
  // of the [heads, tokens, C] device view `in` as the block [heads, tokens, k]: the same bytes as encode_view on the
  // gathered block (the same kernels, loading through the index). decode_cuda_channels writes the decoded block
  // into those channels of `out` ([heads, tokens, C] on the device) and no others. Asynchronous on `stream`.
  void encode_cuda_channels(const TensorView& in, const std::int32_t* index, std::int64_t k, const TokenContext& ctx,
                            std::uint8_t* out, void* stream) const;
  void decode_cuda_channels(const std::uint8_t* in, const std::int32_t* index, std::int64_t k, const TokenContext& ctx,
                            const TensorView& out, void* stream) const;
#endif

 protected:
  // The group stage on the values grid: sign_kernels::choose_group.
  const CpuKernels& cpu_kernels(const group_format::GroupGrid& g) const override;
  // sign.cu through sign_cuda.h.
  VIDKV_QUANTIZER_CUDA_OVERRIDES

 private:
  // The grid over the quantized values: the block itself, or [heads, tokens, fft_components] (sign_kernels::values_grid).
  group_format::GroupGrid grid(const BlockShape& shape) const;
};

void register_sign(PluginRegistry& registry);

}  // namespace vidkv
