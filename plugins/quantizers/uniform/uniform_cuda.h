// uniform on CUDA: the kernels behind UniformQuantizer::encode_cuda / decode_cuda (uniform.cu). Host-only declarations, no
// CUDA headers. Bytes bit-identical to the CPU reference (uniform.cpp) for finite inputs (with NaN or inf in a group,
// its stored min and scale may differ: NaN payloads, and min / max skip a NaN that the reference's scan keeps as
// a group's first value; the NaN's own code may differ; the other values' codes do not (a [cuda] test): the trace
// reader and the host append refuse non-finite values, the device append does not check): the same fp32
// operations per element in
// the same order (min/max are exact, stored_group() and encode_value() of uniform_format.h are shared), written
// through the same format definitions (group_format.h).
//
// Kernels: one thread per group (axis channel: consecutive threads take consecutive channels of the same tokens,
// so a warp's loads are coalesced; axis token: consecutive groups of one token). Where every group's code run
// fills whole 32-bit words (group_format::word_aligned_groups and a 4-byte-aligned codes section: G = 32 with any
// of 1/2/4/8 bits, token counts divisible by G) the group writes its words directly; otherwise a second pass
// writes the codes one byte per thread (group_format::code_byte), so no two threads ever write the same byte.
// Inputs fp32, fp16 or bf16 (converted exactly to fp32 on load); decode writes fp32, fp16 or bf16.
// Fast path (G = 32, bits 1/2/4/8, whole groups; uniform.cu, its per-group coder in uniform_group_coder.cuh, which
// mixed_channel's fused kernels share): codes by the reciprocal with the division kept for
// elements near a rounding boundary (and without the clamps where a warp's groups provably need none), 32-bit index
// arithmetic; on the channel axis with fp16/bf16 input, a block stages 256 / pairs row groups of input and their
// outputs in shared memory (encode_channel_tile); a channel-axis decode thread takes a run of 4 groups of its
// channel pair where the row groups of a head divide by 4 (decode_channel_runs), a token-axis one 4 runs of 8 values;
// fp16 output from fp16 metadata decodes each group whose metadata passes uniform_half_decode.h's test with one fused
// fp16 multiply-add per two values (decode_channel_half: one group of a channel pair per thread; decode_token_half),
// the same fp16 bits as the reference's fp32 decode rounded to fp16 (the header proves it), and the other groups
// through fp32. The bench's four kernels (encode_channel_tile, encode_token_fast, decode_channel_half,
// decode_token_half) are launched as programmatic dependents (core/cuda/dependent_launch.cuh): each waits for the
// previous kernel on the stream before touching memory and lets the next one be dispatched as its last wave runs.
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv {
struct UniformParams;
}

namespace vidkv::uniform_cuda {

struct Config {
  unsigned bits = 2;
  std::int64_t group = 32;
  group_format::GroupAxis axis = group_format::GroupAxis::channel;
  DType scale_dtype = DType::f16;
  group_format::CodeLayout layout = group_format::CodeLayout::dense;
};

// The configuration of a UniformQuantizer's parameters (uniform.cpp; in every build).
Config config_of(const UniformParams& p);

// in: device view [heads, tokens, channels] of `shape`; out: uniform_format::total_bytes(...) device bytes.
// after_independent_kernel: Execution's (execution.h); honoured by the token-axis fast kernel (fp16 / bf16 / fp32
// input), whose late wait is counted (dependent_launch::late_wait_launches, core/cuda/late_wait_count.h).
void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream,
            bool after_independent_kernel = false);
// in: the bytes; out: device buffer of shape.elements() values of out_dtype. after_independent_kernel: honoured by the
// token-axis fp16 decode with fp16 metadata in layout dense (KIVI's values), counted as encode's.
void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream,
            bool after_independent_kernel = false);

}  // namespace vidkv::uniform_cuda
