// sign on CUDA: the kernels behind SignQuantizer::encode_cuda / decode_cuda (sign.cu; the path choice, fused_tile_tokens ..
// tier_name, is host code in sign.cpp, in every build). Host-only declarations, no CUDA headers. Three paths,
// chosen per call by path() (a pure function of the configuration and the shape), and named by SignQuantizer::tier():
//
//   fft off ("sign:cuda", exact): bytes bit-identical to the CPU reference. One thread per group (axis channel:
//     consecutive threads take consecutive channels of the same tokens, coalesced); the group's sum of |x| is
//     accumulated in double in the reference's order (position order within the group), s = float(sum / n)
//     rounded to scale_dtype, bit = (x >= 0). Word-aligned groups write their code words directly (byte by byte
//     where the codes section is not 4-byte aligned: the same bytes); otherwise a second kernel writes each code
//     byte once (group_format::code_byte), so no two threads write one byte.
//
//   fft, fused ("sign:cuda+fft-tile", inexact): power-of-two n in [16, 128] with word-aligned groups and a token
//     tile that fits 48 KiB of shared memory (fused_fft_applies). One kernel per direction: a CTA loads a tile of
//     tokens of one head (16-byte loads, converted to fp32) into shared memory, each thread transforms one token in
//     registers with the AVX-512 path's exact operations (sign_fft_tile.h: same bits as the CPU optimised path's
//     FFT, bound fft_avx512_error_factor), then the groups of the tile are quantized from shared memory (sums in
//     double, in the reference's order) and written; decode mirrors it and writes the block once, coalesced. The
//     data are read and written once: no intermediate buffers.
//
//   fft, cuFFT ("sign:cuda+cufft", inexact): every other n (any n, as FFTW) and grouping. Kernel 1 converts the
//     block to an fp32 [rows, n] buffer; cuFFT R2C over all tokens of the block (batched plans, see below); the
//     group kernels read each component straight from the R2C half spectrum (sign_fft_bins.h index maps, no
//     reorder pass). Decode builds the C2R input half spectrum straight from the bytes (the complex kind's
//     Hermitian part, the 1/n folded in), cuFFT C2R writes the fp32 block (into the output itself when it is fp32),
//     and a last kernel converts to fp16 / bf16. Bound: sign_fft_tolerance.h.
//     Plans: one per (device, n, R2C / C2R, batch) in a process-wide cache (created once under a mutex, never
//     destroyed), made without a work area (cufftSetAutoAllocation(0)); each execution binds the call's stream
//     (cufftSetStream) and a work area allocated on that stream, under the cache's mutex, so one plan serves
//     every thread and stream. Batches are powers of two: a block of R token rows runs as the binary
//     decomposition of R (largest piece first), so at most one plan per power of two exists per (n, kind)
//     however the token counts of a live cache vary. Creating a plan allocates device memory (cuFFT's twiddles),
//     which synchronises the device: once per (n, kind, batch) and process, never again for it.
//
// Inputs fp32, fp16 or bf16 (converted exactly to fp32 on load); decode writes fp32, fp16 or bf16 (rounded to
// nearest even from the fp32 reconstruction, as Quantizer::decode_view does on the CPU). Every call is
// asynchronous on `stream` (no host synchronisation; scratch buffers are stream-ordered allocations).
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv {
struct SignParams;
}

namespace vidkv::sign_cuda {

struct Config {
  std::int64_t group = 32;
  group_format::GroupAxis axis = group_format::GroupAxis::channel;
  sign_format::Reconstruction reconstruction = sign_format::Reconstruction::zero_one;
  SignFft fft = SignFft::off;
  DType scale_dtype = DType::f16;
  group_format::CodeLayout layout = group_format::CodeLayout::dense;
};

// The configuration of a SignQuantizer's parameters (sign.cpp; in every build).
Config config_of(const SignParams& p);
// c in layout dense: layout fragment is coded in layout dense by the paths below, then permuted
// (quantization/fragment_permute.h), so its path is dense's.
Config dense_config(const Config& c);

enum class Path : std::uint8_t { exact, fft_tile, cufft };

// The token tile of the fused kernels for `c` and n channels (a multiple of the group size along tokens for
// axis channel), or 0 where they do not apply (see fused_fft_applies). staged_row_bytes: shared memory per token
// besides the fp32 tile (a gathered encode stages the tokens' full input rows there).
std::int64_t fused_tile_tokens(const Config& c, std::int64_t channels, std::int64_t staged_row_bytes = 0);
// Whether the fused FFT kernels run for this configuration and shape (any alignment of the packed bytes: their
// word stores and loads go byte by byte where the codes section is not 4-byte aligned).
bool fused_fft_applies(const Config& c, const BlockShape& shape);
// The environment variable VIDKV_CUDA_SIGN_FFT=cufft sends every FFT shape to cuFFT (to measure the two FFT paths
// against each other on the same shapes); unset or any other value: the choice above.
Path path(const Config& c, const BlockShape& shape);
// "sign:cuda", "sign:cuda+fft-tile", "sign:cuda+cufft".
const char* tier_name(Path p);

// Where the block's values live. Default: contiguous [heads, tokens, shape.channels]. With `index` (a composite's
// channel split, no gather / scatter pass): channel c of token row (h, t) is element (h * tokens + t) * stride +
// index[c] of a [heads, tokens, stride] buffer; index: shape.channels int32 on the device, each < stride. The fused
// encode then copies the tile's full rows into shared memory with 16-byte loads (where the rows are 16-byte
// aligned and fit) and gathers from there; the other kernels load and store through the index element by element.
struct Channels {
  const std::int32_t* index = nullptr;
  std::int64_t stride = 0;
};

// in: device values of `shape` (see Channels); out: sign_format::total_bytes(...) device bytes.
void encode(const Config& c, const void* in, DType in_dtype, const BlockShape& shape, std::uint8_t* out, void* stream,
            Channels gather = {});
// in: the bytes; out: device buffer of dtype out_dtype receiving the shape.elements() values (see Channels; with an
// index only the indexed channels are written).
void decode(const Config& c, const std::uint8_t* in, const BlockShape& shape, void* out, DType out_dtype, void* stream,
            Channels scatter = {});

}  // namespace vidkv::sign_cuda
