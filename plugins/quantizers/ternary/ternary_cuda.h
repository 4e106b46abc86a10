// ternary on CUDA: the kernels behind TernaryQuantizer::encode_cuda / decode_cuda (ternary.cu). Host-only declarations.
// Bytes bit-identical to the CPU reference (ternary.cpp): each group's sums of |x| are the reference's doubles (in
// its order, or in any order where every partial sum is exact: fp16 input), and the dead-zone comparisons give the
// reference's trits (ternary_format::ternarize in double, or the same compares in the input dtype against the dead
// zone rounded down to it, equal by the argument in ternary.cu).
//
// General kernels: statistics one thread per group (writes the scales and, where the codes need a second pass, the
// group's dead zone to a device scratch array). Codes: slots2 / release with word-aligned groups are written by the
// same thread through group_format::WordRunWriter; base3 (5 trits per byte, never word-aligned) and the other cases
// by a second kernel, one thread per output byte, so no two threads write one byte.
// Fast path (G = 32, whole groups, aligned buffers): one thread per group (channel axis: per channel pair), the
// 2-bit slots t + 1 written whole (base3: to a scratch stream that pack_base3 turns into 5 trits per byte, 4 bytes
// per thread). The channel axis with fp16 / bf16 input and magnitude-free reconstruction, the configuration of the
// VidKV presets' values, runs encode_channel_warp (each warp on its own, packed 2-byte compares, whole-sector
// stores); the channel-axis decode writes fp16 / bf16 values by one packed fma per two values (slot * v - v, v the
// scale rounded to the output dtype: exact) for every group whose rounded scale is finite and positive and whose
// slots are all valid, through fp32 otherwise, and reads a group's base-3 bytes as the three aligned words that
// cover them where those lie inside the codes section. Inputs fp32, fp16 or bf16; decode writes fp32, fp16 or bf16.
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
// after_independent_kernel: Execution's (execution.h); unless VIDKV_CUDA_TERNARY_LATE_WAIT=off (decode_waits_late;
// docs/performance.md section 6), honoured by the fast decode kernels (G = 32, aligned
// buffers; packings base3, slots2 and release, and fragment where every group is in the residual tail), which then
// wait for the kernel before them at their end; counted (dependent_launch::late_wait_launches, late_wait_count.h).
void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream,
            bool after_independent_kernel = false);
// Whether decode honours after_independent_kernel in this process (yes unless VIDKV_CUDA_TERNARY_LATE_WAIT=off; read
// once).
bool decode_waits_late();

}  // namespace vidkv::ternary_cuda
