// ternary on CUDA: the kernels behind TernaryQuantizer::encode_cuda / decode_cuda (ternary.cu). Host-only declarations.
// Bytes bit-identical to the CPU reference (ternary.cpp): each group's sums of |x| are accumulated in double in the
// reference's order by one thread, the dead-zone comparisons are the reference's (ternary_format::ternarize).
//
// Kernels: statistics one thread per group (writes the scales and, where the codes need a second pass, the group's
// dead zone to a device scratch array). Codes: slots2 / release with word-aligned groups (G = 32, whole groups,
// 4-byte-aligned section) are written by the same thread through group_format::WordRunWriter; base3 (5 trits per
// byte, never word-aligned) and the other cases by a second kernel, one thread per output byte, so no two threads
// write one byte. Inputs fp32, fp16 or bf16; decode writes fp32, fp16 or bf16.
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::ternary_cuda {

struct Config {
  double gamma = 0.7;
  std::int64_t group = 32;
  group_format::GroupAxis axis = group_format::GroupAxis::channel;
  ternary_format::Reconstruction reconstruction = ternary_format::Reconstruction::magnitude_free;
  ternary_format::Packing packing = ternary_format::Packing::base3;
  DType scale_dtype = DType::f16;
};

void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream);
void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream);

}  // namespace vidkv::ternary_cuda
