// uniform: asymmetric min/max b-bit quantization in groups (KIVI; VidKV's 2-bit anomalous key channels and
// protected value tokens). algorithms.md 2.1, paper arXiv 2503.16257 Sec. 3 and KIVI arXiv 2402.02750.
//
// Per group of G elements along `axis` (group_format.h): mn = min, mx = max, scale = (mx - mn) / (2^b - 1) in fp32;
// both are then ROUNDED TO scale_dtype (round to nearest even) and the rounded values are the ones stored AND the
// ones used to compute the codes: q = round_half_even(clamp((x - mn') / scale', 0, 2^b - 1)), subtract, divide,
// clamp, round in fp32; decode x' = q * scale' + mn'. Encoding with the stored values keeps encode and decode
// consistent (no code is chosen against a scale the decoder never sees). A group whose rounded scale is 0 (constant
// group, or a range below fp16's smallest subnormal times 2^b - 1) emits code 0 and decodes to mn' exactly, which
// is mn itself whenever mn is representable in scale_dtype (always for fp32).
// Tail rule: when G does not divide the grouped axis (tokens for axis channel, channels for axis token), the last
// group of each row holds the remaining n mod G elements and has its own scale and min.
//
// Differences from the release: the release computes in fp16 and gets constant groups right only by accident
// (NaN); here statistics and codes are fp32 against the fp16-rounded scale/min, and scale == 0 is handled on
// purpose. Codes match the release's packing bit for bit in layout release (test vectors of algorithms.md 2.4).
// A group whose min or scale does not fit scale_dtype (fp16: beyond +-65504) is saturated, never stored as inf:
// uniform_format.h stored_group (the min clamps to the finite range, the scale caps, the levels centre on the
// group's mid-range when its span does not fit), so decode stays finite; such groups keep a large error, which
// scale_dtype fp32 removes. Every group that fits is stored exactly as above.
//
// Packed layout (uniform_format.h), per block [heads, tokens, channels]:
//   codes  dense:    one bitstream, b bits per element, order head, row, position (grouped axis innermost)
//          release:  per row ceil(L / (32/b)) uint32 words, LSB first; b in {1, 2, 4, 8}
//          fragment: dense's bytes with each 2-bit code moved to where decode attention's MMA operands want it
//                    (group_format.h; b = 2, channels a multiple of 64, else ShapeError from layout()), and on
//                    the channel axis with a whole 32-token tile the metadata entries group-major (below)
//   scales one scale_dtype value per group (head, row, group order; layout fragment's channel-axis grids with a
//          whole tile: head, group, row, group_format::group_major_meta)
//   mins   one scale_dtype value per group
// effective bits = b + 2 * 8 * sizeof(scale_dtype) / G (dense, exactly when G divides the axis; plus the padding
// of the last byte / of each row's last word otherwise): 2-bit, G = 32, fp16 -> 2 + 32/32 = 3.0.
#pragma once

#include "vidkv/core/cpu_implementation.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/quantization/group_format.h"
#include "vidkv/quantization/group_params.h"
#include "vidkv/quantization/grouped_quantizer.h"

namespace vidkv {

struct UniformParams {
  int bits = 2;
  int group = 32;
  group_format::GroupAxis axis = group_format::GroupAxis::channel;
  DType scale_dtype = DType::f16;
  group_format::CodeLayout layout = group_format::CodeLayout::dense;

  template <class B>
  static void bind(B& b) {
    b.integer("bits", &UniformParams::bits, 1, 8, "bits", "code bits per element");
    group_params::bind_group(b, &UniformParams::group);
    group_params::bind_axis(b, &UniformParams::axis,
                            "channel: a group is G consecutive tokens of one channel; "
                            "token: G consecutive channels of one token");
    group_params::bind_scale_dtype(b, &UniformParams::scale_dtype, "storage type of each group's scale and min");
    group_params::bind_layout(b, &UniformParams::layout,
                              "dense bitstream, the release's uint32 words per row (bits 1, 2, 4, 8 only), or fragment: "
                              "the dense bytes permuted into the tensor cores' operand order per 32-token tile (bits 2, "
                              "channels a multiple of 64)",
                              /*with_fragment=*/true);
  }
  // Cross-parameter check: layout release needs bits in {1, 2, 4, 8}, layout fragment bits 2. Throws ConfigError
  // naming `layout`.
  void validate(const ConfigNode& node) const;
  // The same check without a config node (plugins constructed from code).
  void check() const;
};

// encode, decode and tier (grouped_quantizer.h) run / name the tier that uniform_kernels::choose picks
// (uniform_kernels.h: the table of implementations; the optimised tiers' bytes are identical to the reference: min,
// max, the division and round-half-even are exact, evaluated per element in the same order, only the loop order
// over groups changes). cpu: "uniform:reference", "uniform:optimized" (portable) or "uniform:avx512"; cuda:
// "uniform:cuda". All exact.
class UniformQuantizer : public GroupedQuantizer<UniformParams> {
 public:
  using Params = UniformParams;
  explicit UniformQuantizer(const Params& params, CpuImplementation implementation = CpuImplementation::optimized);

  PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const override;
  // Layout fragment needs a multiple of 64 channels (group_format::fragment_ok): otherwise false with the reason, so
  // that an experiment is refused while it is planned (and a mixed_channel part through its children), not when its
  // first block is encoded (layout() throws the ShapeError then).
  bool supports(Device device, const BlockShape& shape, std::string* why = nullptr) const override;
  // Token-separable (Quantizer::token_separable) with axis token, in layout release (each token's codes a row of
  // whole words) or in layout dense where a token's codes fill whole bytes (channels * bits a multiple of 8): its
  // groups lie within the token's row, the dense code stream runs head, token, channel, and scales and mins are in
  // group order (head, token, group). KIVI's values (2 bits, 128 channels: 32 + 8 + 8 bytes per token and head in
  // fp16). In layout fragment only blocks of fewer than 32 tokens (all tail: dense's bytes), so a merged KIVI value
  // block holds at most 31 tokens.
  bool token_separable(const BlockShape& shape) const override;

 protected:
  const CpuKernels& cpu_kernels(const group_format::GroupGrid& g) const override;
  // uniform.cu through uniform_cuda.h.
  VIDKV_QUANTIZER_CUDA_OVERRIDES
};

void register_uniform(PluginRegistry& registry);

}  // namespace vidkv
