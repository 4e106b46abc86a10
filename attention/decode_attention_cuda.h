// Host-only declarations of the fused decode-attention kernels (decode_attention.cu); no CUDA headers. Only in
// builds with CUDA (VIDKV_WITH_CUDA).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vidkv/attention/decode_attention_tables.h"

namespace vidkv::attention_cuda {

// Enqueues the fast kernel (or, when p.fragment, the fragment kernel; else when p.tensor_cores, the tensor-core kernel) on the fast tiles, the general (split) kernel on the others, and the combine kernel.
// Both split kernels: one thread block of 4 warps per (split, KV head, sequence); all query heads of the KV head in
// the block; each warp takes every 4th tile of the split, lane = token for the scores and lanes over channels for the
// values; online softmax per warp, the warps merged in shared memory into p.partial_* (the fast kernel's splits
// first). The fast kernel stages each tile's codes a run at a time (decode_attention_staging.h). The combine kernel
// (one block per (KV head, sequence, query head)) merges the splits and writes p.out. Tables and workspace must be device
// memory. Throws CudaError on a launch failure.
//
// The general kernel beside the fast / tensor-core kernel, when both kinds of tiles are present: at small batches
// its few residual tiles are a fixed latency (tens of us) that this hides; the caller leaves room for its blocks in
// the fast kernel's wave (DecodeAttention::update). Two ways:
//  * p.generic_target != 0 (p.generic_done: device counters [2, batch, heads], zero before the launch, which the
//    combine kernel returns to zero; generic_target: the general kernel's blocks per (sequence, KV head),
//    generic_splits; Problem says more): on `stream` alone, the general kernel first and the other by a
//    programmatic dependent launch that does not wait for it; the combine kernel waits for both
//    (general_beside_on_one_stream() must hold);
//  * beside given (and generic_target 0): the general kernel on beside's stream (forked from and joined back into
//    `stream` with beside's events; the combine kernel runs after both; a launch that throws still joins the side
//    stream back).
class SideStream;
void launch(const attention_tables::Problem& p, void* stream, const SideStream* beside = nullptr);

// Whether launch() can run the general kernel beside the other on one stream (programmatic dependent launch:
// compute capability 9.0 or newer, the general kernel built for sm_90 or newer, not turned off by
// VIDKV_NO_DEPENDENT_LAUNCH (core/cuda/dependent_launch.cuh) nor by VIDKV_CUDA_ATTENTION_ONE_STREAM=0).
bool general_beside_on_one_stream();

// A second CUDA stream (non-blocking) and two events without timing, on the current device; destroyed with the
// object (after the work enqueued on the stream: cudaStreamDestroy returns at once and the stream's work completes).
// Throws CudaError when the runtime refuses one of them.
class SideStream {
 public:
  SideStream();
  ~SideStream();
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;
  void* stream() const { return stream_; }  // cudaStream_t
  void* fork() const { return fork_; }      // cudaEvent_t: recorded on the main stream, waited for by the side stream
  void* join() const { return join_; }      // cudaEvent_t: recorded on the side stream, waited for by the main stream

 private:
  void* stream_ = nullptr;
  void* fork_ = nullptr;
  void* join_ = nullptr;
};

// Thread blocks of the fast kernel for p's formats and shape that one multiprocessor holds at once (registers and
// shared memory; cudaOccupancyMaxActiveBlocksPerMultiprocessor), at least 1.
int fast_blocks_per_sm(const attention_tables::Problem& p);
// The tensor-core kernel on the fast tiles alone (decode_attention_tensor_core.cu; launch() calls it when
// p.tensor_cores). NotSupportedError when attention_tensor_core::formats_ok(p) is false.
// beside_previous: a programmatic dependent launch that does not wait for the kernel before it (launch()'s general
// kernel beside it on one stream).
void launch_tensor_core(const attention_tables::Problem& p, void* stream, bool beside_previous = false);
// How launch_fragment launches: plain (after everything before it), beside_previous (as for launch_tensor_core), or
// after_transform: right after the query transform kernel, as its programmatic dependent where the device and the
// kernel's code allow it (dependent_launch::enabled, kernel_waits; else plain): the fragment kernel's blocks start
// while the transform's last blocks run, issue their first tiles' copies and wait for the transform grid
// (Problem::wait_for_transform) before they read its result.
enum class FragmentLaunch { plain, beside_previous, after_transform };
// The fragment kernel on the fast tiles alone (decode_attention_fragment.cu; launch() calls it when p.fragment):
// NotSupportedError when attention_fragment::formats_ok(p) is false.
void launch_fragment(const attention_tables::Problem& p, void* stream, FragmentLaunch how = FragmentLaunch::plain);
// The general kernel's instance that launch() runs on p's general tiles where p.general_tensor_cores: the residual
// windows' narrow tiles of the fragment formats on the tensor cores (decode_attention_fragment.cu,
// fragment_residual_kernel; same grid, threads, shared memory and partial slots as the general kernel).
// NotSupportedError where attention_fragment::residual_tensor_core_formats(p) is false.
using AttentionKernel = void (*)(const attention_tables::Problem);
AttentionKernel fragment_residual_kernel_for(const attention_tables::Problem& p);
// Thread blocks of the fragment kernel one multiprocessor holds at once, at least 1.
int fragment_blocks_per_sm(const attention_tables::Problem& p);

// The fragment kernels' operand arithmetic on this device, for the [cuda] tests: whether the tensor cores treat the
// codes as fp16 subnormals (attention_fragment::subnormal_code_pair) exactly as the same codes as fp16 integers, up
// to the rows' powers of two, and what the probabilities' register transpose gives. For each case w (a warp) and each
// group k of four fields (2-bit words: 2 groups, 1-bit: 4), one mma.m16n8k16 with A = the subnormal pairs of fields
// 4 k .. 4 k + 3 of the lane's word words[w][lane], B = b[w][lane][0..1] (fp16 pairs), C = c[w][lane][0..3] times each
// row's 2^(s - 24), its D times subnormal_unscale (out.subnormal), and one with A = the same codes as fp16 integers and
// C as given (out.integer); both [cases][groups][32 lanes][4] floats. out.transposed[w][lane]: the movmatrix
// transpose (transpose_pairs) of words[w][lane] read as an 8 x 8 matrix of 16-bit halves. Host vectors in and out:
// words [cases][32], b [cases][32][2], c [cases][32][4]; bits 1 or 2 (ShapeError otherwise).
struct FragmentOperandCheck {
  std::vector<float> subnormal, integer;
  std::vector<std::uint32_t> transposed;
};
FragmentOperandCheck fragment_operand_check(const std::vector<std::uint32_t>& words, const std::vector<std::uint32_t>& b,
                                            const std::vector<float>& c, int bits);
// Thread blocks of the tensor-core kernel one multiprocessor holds at once, at least 1.
int tensor_core_blocks_per_sm(const attention_tables::Problem& p);
// The same for the general kernel (the residual's tiles and layouts whose codes are not staged).
int generic_blocks_per_sm(const attention_tables::Problem& p);

}  // namespace vidkv::attention_cuda
