// One CPU tier of a grouped quantizer's kernel table (plugins/quantizers/{uniform,sign,ternary}/*_kernels.h): the
// tier's name and its block encode / decode, all with one signature per plugin. Params: the plugin's validated
// parameter struct; g: the group grid of what is quantized (group_format::make_group_grid). encode: `in` fp32
// row-major, host, finite, g.elements() values; `out` the plugin's format sections, zeroed by the caller. decode:
// `in` those bytes, `out` g.elements() fp32 values. The plugin's *_kernels.h says which sections and when each
// tier runs.
#pragma once

#include <cstdint>

#include "vidkv/quantization/group_format.h"

namespace vidkv::group_format {

template <class Params>
struct CpuKernelEntry {
  using EncodeFn = void (*)(const Params& p, const GroupGrid& g, const float* in, std::uint8_t* out);
  using DecodeFn = void (*)(const Params& p, const GroupGrid& g, const std::uint8_t* in, float* out);
  const char* tier;  // the suffix of KernelTier::name: "reference", "optimized", "avx512"
  EncodeFn encode;
  DecodeFn decode;
};

}  // namespace vidkv::group_format
