// ternary: VidKV's "1.58-bit" value quantizer, t in {-1, 0, +1} with a dead zone per group. algorithms.md 2.3 and 4;
// paper arXiv 2503.16257 Eq. 6.
//
// Per group of G values along `axis` (default channel: G consecutive tokens of one channel, the paper's finding
// for video LLM values): m = mean |x|, a = gamma * m (both in double); t = +1 if x > a, -1 if x < -a, else 0.
// Reconstruction magnitude_free (paper and release): exactly t, no magnitude. scaled (addition): t * u with
// u = mean(|x| over |x| > a) stored per group in scale_dtype (saturated to its finite range: fp16 65504), 0 when no
// value exceeds a.
// Tail rule as in group_format.h: the last group of a row holds the remaining n mod G values, own statistics.
//
// Differences from the paper/release: gamma defaults to the paper's 0.7 (release 0.5, set gamma: 0.5); packing
// base3 (5 trits per byte) is this project's; packing release reproduces the release's 2-bit slots plus the fp16
// scale it stores and never uses (we store m = mean |x|, or u with reconstruction scaled, where it IS used) and a
// constant min (we write -1, never read).
//
// Packed layout (ternary_format.h):
//   codes  base3: ceil(elements / 5) bytes; slots2: dense 2-bit t + 1; release: uint32 words of 2-bit t + 1 per row;
//          fragment: slots2's bytes permuted into group_format.h's fragment layout, values orientation (decode
//          attention's MMA operands; channels a multiple of 64)
//   scales scale_dtype per group, only with reconstruction scaled or packing release (fragment: group-major on the
//          channel axis with a whole 32-token tile)
//   mins   scale_dtype per group, packing release only
// effective bits (G = 32 divides the axis, fp16): base3 1.6, slots2 and fragment 2.0 (+0.5 each when scaled), release 3.0.
#pragma once

#include "vidkv/core/cpu_implementation.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"
#include "vidkv/quantization/group_format.h"
#include "vidkv/quantization/group_params.h"
#include "vidkv/quantization/grouped_quantizer.h"

namespace vidkv {

struct TernaryParams {
  double gamma = 0.7;
  int group = 32;
  group_format::GroupAxis axis = group_format::GroupAxis::channel;
  ternary_format::Reconstruction reconstruction = ternary_format::Reconstruction::magnitude_free;
  ternary_format::Packing packing = ternary_format::Packing::base3;
  DType scale_dtype = DType::f16;

  template <class B>
  static void bind(B& b) {
    using ternary_format::Packing;
    using ternary_format::Reconstruction;
    b.real("gamma", &TernaryParams::gamma, 0.0, 4.0, "", "dead zone a = gamma * mean|x| (paper 0.7, release 0.5)");
    group_params::bind_group(b, &TernaryParams::group);
    group_params::bind_axis(b, &TernaryParams::axis,
                            "channel: a group is G consecutive tokens of one channel (paper); "
                            "token: G consecutive channels");
    b.choice("reconstruction", &TernaryParams::reconstruction,
             std::vector<std::pair<std::string, Reconstruction>>{{"magnitude_free", Reconstruction::magnitude_free},
                                                                 {"scaled", Reconstruction::scaled}},
             "magnitude_free: decode exactly t (paper, release); scaled: t * mean(|x| over |x| > a)");
    b.choice("packing", &TernaryParams::packing,
             std::vector<std::pair<std::string, Packing>>{{"base3", Packing::base3}, {"slots2", Packing::slots2}, {"release", Packing::release},
                                                          {"fragment", Packing::fragment}},
             "base3: 5 trits per byte (1.6 bits); slots2: dense 2-bit slots; release: uint32 2-bit slots + scale + min; "
             "fragment: slots2's bytes (2.0 bits) in the order of decode attention's MMA operands (channels a multiple of "
             "64)");
    group_params::bind_scale_dtype(b, &TernaryParams::scale_dtype,
                                   "storage type of the per-group scale (and of the release's min)");
  }
};

// encode, decode and tier (grouped_quantizer.h) run / name the tier that ternary_kernels::choose picks
// (ternary_kernels.h: the table of implementations; the optimised tiers' bytes are identical to the reference: each
// group's sums are accumulated in double in the reference's order, the dead-zone comparisons are the reference's).
// cpu: "ternary:reference", "ternary:optimized" or "ternary:avx512"; cuda: "ternary:cuda". All exact.
class TernaryQuantizer : public GroupedQuantizer<TernaryParams> {
 public:
  using Params = TernaryParams;
  explicit TernaryQuantizer(const Params& params, CpuImplementation implementation = CpuImplementation::optimized);

  PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const override;
  // Packing fragment needs a multiple of 64 channels (ternary_format::packing_ok): otherwise false with the reason, so
  // that the runner refuses the codec before the first block (layout() throws ShapeError).
  bool supports(Device device, const BlockShape& shape, std::string* why = nullptr) const override;

 protected:
  const CpuKernels& cpu_kernels(const group_format::GroupGrid& g) const override;
  // ternary.cu through ternary_cuda.h.
  VIDKV_QUANTIZER_CUDA_OVERRIDES
};

void register_ternary(PluginRegistry& registry);

}  // namespace vidkv
