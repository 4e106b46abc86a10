// The skeleton shared by the grouped quantizers (plugins/quantizers/{uniform,ternary,sign}): a Quantizer with a
// parameter struct `Params` (a group size `group` and a grouping axis `axis`, group_format.h) and one table of CPU
// kernel entries (group_kernel_entry.h, the plugin's *_kernels.h), one of which its cpu_kernels() picks per grid.
//
// Held once here: the parameters and the CpuImplementation requested; the check of the group size; the grid of a
// block (group_format::grid_of); and, for a plugin whose block IS what it groups (uniform, ternary), encode /
// decode / tier:
//   encode  zeroes the layout(shape, ctx).bytes() output bytes (the entries write into a zeroed codes section), then
//           runs cpu_kernels(grid).encode on the block: `in` [heads, tokens, channels] fp32 row-major, host.
//   decode  runs cpu_kernels(grid).decode into `out` (shape.elements() fp32, host).
//   tier    "<plugin>:<entry tier>" on cpu, "<plugin>:cuda" on cuda (the plugin's CUDA kernels), exact: every tier
//           of these plugins writes the reference's bytes (their *_kernels.h say why).
// sign, which quantizes the block or its channel FFT, overrides encode / decode / tier and keeps the rest.
//
// Errors: the constructor throws ConfigError "<plugin>: group = G must be >= 1" (parameters built in code; a YAML
// block is bounded by Params::bind already).
#pragma once

#include <cstdint>
#include <cstring>

#include "vidkv/core/cpu_implementation.h"
#include "vidkv/core/error.h"
#include "vidkv/core/quantizer.h"
#include "vidkv/quantization/group_format.h"
#include "vidkv/quantization/group_kernel_entry.h"

namespace vidkv {

template <class Params>
class GroupedQuantizer : public Quantizer {
 public:
  using CpuKernels = group_format::CpuKernelEntry<Params>;

  const Params& params() const { return params_; }

  void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const override {
    std::memset(out, 0, layout(shape, ctx).bytes());
    const auto g = block_grid(shape);
    cpu_kernels(g).encode(params_, g, in, out);
  }
  void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, float* out) const override {
    const auto g = block_grid(shape);
    cpu_kernels(g).decode(params_, g, in, out);
  }
  KernelTier tier(Device device, const BlockShape& shape) const override {
    if (device == Device::cuda) return {plugin_name() + ":cuda", true};
    return {plugin_name() + ":" + cpu_kernels(block_grid(shape)).tier, true};
  }

 protected:
  // `name`: the plugin's registry name (error messages, tier names).
  GroupedQuantizer(const char* name, const Params& params, CpuImplementation implementation)
      : params_(params), implementation_(implementation) {
    VIDKV_REQUIRE(params.group >= 1, ConfigError, name, ": group = ", params.group, " must be >= 1");
    set_plugin_name(name);
  }

  // The CPU entry that runs on grid `g` for implementation_: the plugin's *_kernels choice, the only one.
  virtual const CpuKernels& cpu_kernels(const group_format::GroupGrid& g) const = 0;

  // The grid of the block itself ([heads, tokens, channels] grouped along params().axis).
  group_format::GroupGrid block_grid(const BlockShape& shape) const {
    return group_format::grid_of(params_, shape, shape.channels);
  }

  Params params_;
  CpuImplementation implementation_;
};

}  // namespace vidkv
