// Where a plugin call runs: the backend seam every plugin entry point takes.
//
// An Execution names the device (cpu or cuda) and, for cuda, the CUDA stream the call enqueues its work on
// (a cudaStream_t passed as void*, so that host-only code never includes CUDA headers; null is the legacy default
// stream). Device calls are asynchronous with respect to the host: they return once the work is enqueued, and the
// caller synchronises the stream before reading results on the host (device_memory.h). A torch tensor's stream
// (torch.cuda.current_stream().cuda_stream) can be passed as is, so the live cache runs on the model's stream.
//
// after_independent_kernel (cuda only; false by default, which is always correct): the caller's promise that this
// call's work is independent of the last kernel enqueued before it on the stream, which lets the call's first kernel
// do its work while that kernel finishes and wait for it only at its end (programmatic dependent launch,
// core/cuda/dependent_launch.cuh), so that the two kernels' last waves overlap instead of following each other.
// The caller may set it only where all of these hold:
//   * the last kernel enqueued before the call is one of a Quantizer call on the same stream, made without the flag
//     and not empty (a non-empty call enqueues at least one operation, quantizer.h), and nothing but that call's
//     stream-ordered frees of its own scratch follows it (a copy or fill after it would only take away the overlap:
//     a dependent launch overlaps a kernel, nothing else); VidKV's kernels let the next kernel start only after their
//     own wait, so what was enqueued before that kernel is complete then;
//   * the call's input and output were allocated and written before that kernel was enqueued, and that kernel
//     neither writes them nor reads the output;
// as in KvCodec::encode_pair / decode_pair: a layer's values after its keys. A plugin honours it only in its first
// kernel, and only where that kernel touches nothing but the call's input and output before its wait (uniform's
// token-axis kernels; ternary's fast decode kernels unless VIDKV_CUDA_TERNARY_LATE_WAIT=off); every later kernel of the
// call, and a composite's children (a fresh Execution), wait first.
// Objects that keep an Execution (LayerCache) keep it without the flag.
#pragma once

#include <string>

#include "vidkv/core/tensor_view.h"

namespace vidkv {

struct Execution {
  Device device = Device::cpu;
  void* cuda_stream = nullptr;  // cudaStream_t when device == cuda; null = the default stream
  bool after_independent_kernel = false;  // cuda: see above

  static Execution cpu() { return Execution{}; }
  static Execution cuda(void* stream = nullptr) { return Execution{Device::cuda, stream}; }
  bool on_cuda() const { return device == Device::cuda; }
  // This execution with after_independent_kernel set to `independent`.
  Execution with_independence(bool independent) const {
    Execution e = *this;
    e.after_independent_kernel = independent;
    return e;
  }
  std::string str() const { return device_name(device); }
};

}  // namespace vidkv
