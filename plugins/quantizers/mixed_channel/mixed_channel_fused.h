// mixed_channel on CUDA, fused: one kernel per direction for the split "uniform on the high channels, sign with the
// FFT on the low ones" (VidKV's 1.x-bit keys, paper section 3.2), instead of the gather, the two children's kernels
// and the scatter (mixed_channel.cu). Host-only declarations, no CUDA headers; the entry points in
// mixed_channel_fused.cu, the kernels in mixed_channel_fused_kernels.cuh (compiled by bit width in mixed_channel_fused_bits{1,2,4,8}.cu).
//
// A CTA of 128 threads takes one tile of 64 tokens of one head ([64, D] values, inside one mask's rows) and computes
// the mask's slot tables itself: the mask's D / 8 bytes staged in shared memory as 32-bit words, ranks counted by
// __popc (mixed_channel_split::table_entry_from_words, the same entries as table_entry). Encode: the tile's rows are
// copied whole into shared memory (16-byte asynchronous copies); the first 64 threads code the uniform groups of the
// high channel pairs from the staged rows (uniform_group_coder.cuh: pair_min_max, group_codes_in_range,
// store_group_codes) while the other 64 widen the low channels to an fp32 tile; then every thread transforms half a
// token (sign_fft_tile.h's forward_half_first_pass / forward_half_finish: threads t and t + 64 share token t, the
// even and the odd frequencies, bit-identical to forward_row); last, every thread codes sign groups of the
// transformed tile, a code word assembled at a time (sign_format::encode_group's sum and bits). Decode: the sign
// groups are decoded into the fp32 spectrum tile a code word at a time (sign_format::decode_value); then the first 64
// threads inverse-transform one token each (inverse_row) while the other 64 decode the uniform groups into an fp32
// tile of the high channels (decoded_value); last, the full rows are written once with 16-byte stores through the
// slot table. The kernels' first versions (tables from the mask bytes in global memory, a whole token's transform per
// thread on half the CTA, codes through the 64-bit run writer / reader, slot lookups per output vector) stay
// selectable for A / B runs: VIDKV_CUDA_FUSED_ENCODE=first, VIDKV_CUDA_FUSED_DECODE=first (the same bytes and values;
// the [cuda] test checks). Every value goes through the unfused path's operations
// (uniform's fp16 decode from fp16 metadata excepted: there the fused kernel decodes through fp32 and rounds once,
// which uniform_half_decode.h proves equal to the unfused kernel's fp16 multiply-add for every group it takes that
// way), so the bytes and the decoded values are bit-identical to it (a [cuda] test compares them;
// VIDKV_CUDA_MIXED_CHANNEL=unfused selects that path), and the FFT's tolerance against the CPU reference is the
// fused sign tile's (sign_cuda.h). Rows of an invalid mask (not k channels set) decode to NaN and encode by the split
// "first k channels high", as the unfused kernels do.
//
// Device memory traffic: encode reads the block once and writes the packed bytes; decode reads the bytes and writes
// the block once (the unfused path also writes and reads two dense child blocks, and launches the table kernel).
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_cuda.h"
#include "vidkv/plugins/quantizers/sign/sign_cuda.h"
#include "vidkv/plugins/quantizers/uniform/uniform_cuda.h"

namespace vidkv::mixed_channel_fused {

// The children's CUDA configurations (UniformQuantizer / SignQuantizer parameters).
struct Children {
  uniform_cuda::Config high;
  sign_cuda::Config low;
};

// Tokens per CTA, and the dynamic shared memory of one CTA for D channels, k high ones and W low FFT components
// (W = D - k real, 2 (D - k) complex): encode stages the tile's rows (2-byte values), the fp32 spectrum tile
// [64, W + 1] and the source tables; decode holds the fp32 tiles [64, k + 1] and [64, W + 1] and the slot table.
constexpr std::int64_t kTileTokens = 64;
constexpr std::size_t encode_shared_bytes(std::int64_t d, std::int64_t w) {
  return static_cast<std::size_t>(kTileTokens * d * 2 + kTileTokens * (w + 1) * 4 + d * 4);
}
constexpr std::size_t decode_shared_bytes(std::int64_t d, std::int64_t k, std::int64_t w) {
  return static_cast<std::size_t>(kTileTokens * (k + 1 + w + 1) * 4 + d * 4);
}
// The largest of the two that refusal() accepts: within the opt-in limit of every GPU the build targets (99 KB per
// block on compute capability 8.6 / 8.9, 163 KB on 8.0, 227 KB on 9.0).
constexpr std::size_t kMaxSharedBytes = 96 * 1024;

// Why the fused kernels do not apply to a split of `shape` (one part: heads of the part's block, all tokens, D
// channels, k = split.high), or null when they do. Conditions: 0 < k < D, D % 8 == 0, both kernels' shared memory
// within kMaxSharedBytes (D up to about 700 with the real FFT); high: group 32
// along tokens (axis channel), bits 1 / 2 / 4 / 8, word-aligned groups, k even; low: the sign FFT on its fused tile
// path (sign_cuda::path == fft_tile: power-of-two D - k in [16, 128]) along tokens with a group size dividing 64;
// the environment variable VIDKV_CUDA_MIXED_CHANNEL not "unfused". The call-time conditions (dtype, alignment) are
// in encode_refusal / decode_refusal.
const char* refusal(const Children& c, const BlockShape& shape, std::int64_t k);
// refusal, then: input fp16 or bf16 (the high pairs are coded from the 2-byte values, as uniform's tile kernel
// does), the input 16-byte aligned, both children's bytes 4-byte aligned.
const char* encode_refusal(const Children& c, const BlockShape& shape, std::int64_t k, DType in_dtype, const void* in,
                           const std::uint8_t* high_bytes, const std::uint8_t* low_bytes);
// refusal, then: output fp16, bf16 or fp32, 16-byte aligned; both children's bytes 4-byte aligned.
const char* decode_refusal(const Children& c, const BlockShape& shape, std::int64_t k, DType out_dtype, const void* out,
                           const std::uint8_t* high_bytes, const std::uint8_t* low_bytes);

// One part of a split (rows first_row .. first_row + shape.heads * shape.tokens of the layer, which the split's masks
// cover): in: device [shape.heads, shape.tokens, D] values; high_bytes / low_bytes: where the children's packed
// blocks of the part go (their layouts for [heads, tokens, k] and [heads, tokens, D - k]). Asynchronous on `stream`.
// Only where encode_refusal is null. Throws CudaError where a call-time condition fails (fp32 input).
void encode(const Children& c, const mixed_channel_cuda::Split& split, std::int64_t first_row, const BlockShape& shape,
            const void* in, DType in_dtype, std::uint8_t* high_bytes, std::uint8_t* low_bytes, void* stream);
// The inverse: out: device [shape.heads, shape.tokens, D] values of out_dtype. Only where decode_refusal is null.
void decode(const Children& c, const mixed_channel_cuda::Split& split, std::int64_t first_row, const BlockShape& shape,
            const std::uint8_t* high_bytes, const std::uint8_t* low_bytes, void* out, DType out_dtype, void* stream);

// Fused kernels launched by this process so far (encode and decode together): lets tests tell that the fused path
// ran, not the unfused one under the same tier name.
std::int64_t launches();
// Of those, the kernels' first versions (VIDKV_CUDA_FUSED_ENCODE=first / VIDKV_CUDA_FUSED_DECODE=first): lets tests
// tell that the switch took effect.
std::int64_t first_version_launches();

}  // namespace vidkv::mixed_channel_fused
