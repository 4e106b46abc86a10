// ternary: CPU scalar reference of VidKV's 1.58-bit value quantizer (dead zone gamma * mean|x| per group,
// algorithms.md 2.3). Release differences and effective bits: ternary.h; packed layout: ternary_format.h
// (codes in base3 / slots2 / release words | scales when used or in release | constant mins in release).
#include "vidkv/plugins/quantizers/ternary/ternary.h"

#include <cmath>
#include <string>

#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/ternary/ternary_cuda.h"
#include "vidkv/plugins/quantizers/ternary/ternary_kernels.h"

namespace vidkv {

using ternary_format::Packing;
using ternary_format::Reconstruction;

TernaryQuantizer::TernaryQuantizer(const Params& params, CpuImplementation implementation)
    : GroupedQuantizer("ternary", params, implementation) {
  VIDKV_REQUIRE(params.gamma >= 0.0 && params.gamma <= 4.0, ConfigError, "ternary: gamma = ", params.gamma,
                " is out of range [0, 4]");
}

const TernaryQuantizer::CpuKernels& TernaryQuantizer::cpu_kernels(const group_format::GroupGrid& g) const {
  return ternary_kernels::choose(implementation_, params_, g);
}

namespace {
std::string fragment_channels_message(std::int64_t channels) {
  return "packing fragment needs a multiple of 64 channels (whole lane vectors of a 32-token tile), got a block of " +
         std::to_string(channels) + " channels (use packing: slots2)";
}
}  // namespace

PackedLayout TernaryQuantizer::layout(const BlockShape& shape, const TokenContext&) const {
  const auto g = block_grid(shape);
  const DType sd = params_.scale_dtype;
  VIDKV_REQUIRE(ternary_format::packing_ok(params_.packing, g), ShapeError, "ternary: ", fragment_channels_message(shape.channels));
  PackedLayout l(shape.elements(), std::log2(3.0));
  l.add("codes", SectionKind::codes, ternary_format::codes_bytes(params_.packing, g));
  if (ternary_format::has_scales(params_.packing, params_.reconstruction))
    l.add("scales", SectionKind::scales, ternary_format::scales_bytes(params_.packing, params_.reconstruction, g, sd));
  if (params_.packing == Packing::release) l.add("mins", SectionKind::zero_points, ternary_format::mins_bytes(params_.packing, g, sd));
  return l;
}

bool TernaryQuantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (!Quantizer::supports(device, shape, why)) return false;
  if (ternary_format::packing_ok(params_.packing, block_grid(shape))) return true;
  if (why) *why = "ternary " + fragment_channels_message(shape.channels);
  return false;
}

namespace ternary_kernels {

void encode_reference(const TernaryParams& params, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  const DType sd = params.scale_dtype;
  const Packing p = params.packing;
  const Reconstruction rec = params.reconstruction;
  const auto sec = ternary_format::sections(p, rec, g, sd, out);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        double sum_abs = 0.0;
        for (std::int64_t j = j0; j < j0 + n; ++j) sum_abs += std::fabs(static_cast<double>(in[g.block_offset(h, r, j)]));
        const double mean_abs = sum_abs / static_cast<double>(n);
        const double dead_zone = params.gamma * mean_abs;
        double sum_kept = 0.0;
        std::int64_t kept = 0;
        for (std::int64_t j = j0; j < j0 + n; ++j) {
          const double x = in[g.block_offset(h, r, j)];
          const int t = ternary_format::ternarize(x, dead_zone);
          ternary_format::put_trit(p, codes, g, h, r, j, t);
          if (t != 0) {
            sum_kept += std::fabs(x);
            ++kept;
          }
        }
        if (ternary_format::has_scales(p, rec)) {
          // scaled: the magnitude decode uses; magnitude_free with packing release: the release's unused mean |x|.
          const double scale = rec == Reconstruction::scaled ? (kept ? sum_kept / static_cast<double>(kept) : 0.0) : mean_abs;
          group_format::put_scalar(scales, ternary_format::scale_index(p, g, h, r, gi), sd, static_cast<float>(scale));
        }
        if (p == Packing::release) group_format::put_scalar(mins, g.group_index(h, r, gi), sd, ternary_format::kReleaseMin);
      }
    }
  }
}

void decode_reference(const TernaryParams& params, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  const DType sd = params.scale_dtype;
  const Packing p = params.packing;
  const auto sec = ternary_format::sections(p, params.reconstruction, g, sd, in);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const float u = params.reconstruction == Reconstruction::scaled
                            ? group_format::get_scalar(scales, ternary_format::scale_index(p, g, h, r, gi), sd)
                            : 1.0f;
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        for (std::int64_t j = j0; j < j0 + n; ++j)
          out[g.block_offset(h, r, j)] = static_cast<float>(ternary_format::get_trit(p, codes, g, h, r, j)) * u;
      }
    }
  }
}

}  // namespace ternary_kernels

#ifdef VIDKV_WITH_CUDA
namespace {
ternary_cuda::Config cuda_config(const TernaryParams& p) {
  return ternary_cuda::Config{p.gamma, p.group, p.axis, p.reconstruction, p.packing, p.scale_dtype};
}
}  // namespace

void TernaryQuantizer::encode_cuda(const TensorView& in, const BlockShape& shape, const TokenContext&, std::uint8_t* out,
                          const Execution& ex) const {
  ternary_cuda::encode(cuda_config(params_), in.data, in.dtype, shape, out, ex.cuda_stream);
}

void TernaryQuantizer::decode_cuda(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, const TensorView& out,
                          const Execution& ex) const {
  ternary_cuda::decode(cuda_config(params_), in, shape, out.data, out.dtype, ex.cuda_stream, ex.after_independent_kernel);
}
#endif

void register_ternary(PluginRegistry& registry) {
  registry.add<TernaryQuantizer>("ternary", "VidKV 1.58-bit: t in {-1, 0, +1} with dead zone gamma * mean|x| per group");
}

}  // namespace vidkv
