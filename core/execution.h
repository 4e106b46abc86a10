// Where a plugin call runs: the backend seam every plugin entry point takes.
//
// An Execution names the device (cpu or cuda) and, for cuda, the CUDA stream the call enqueues its work on
// (a cudaStream_t passed as void*, so that host-only code never includes CUDA headers; null is the legacy default
// stream). Device calls are asynchronous with respect to the host: they return once the work is enqueued, and the
// caller synchronises the stream before reading results on the host (device_memory.h). A torch tensor's stream
// (torch.cuda.current_stream().cuda_stream) can be passed as is, so the live cache runs on the model's stream.
#pragma once

#include <string>

#include "vidkv/core/tensor_view.h"

namespace vidkv {

struct Execution {
  Device device = Device::cpu;
  void* cuda_stream = nullptr;  // cudaStream_t when device == cuda; null = the default stream

  static Execution cpu() { return Execution{}; }
  static Execution cuda(void* stream = nullptr) { return Execution{Device::cuda, stream}; }
  bool on_cuda() const { return device == Device::cuda; }
  std::string str() const { return device_name(device); }
};

}  // namespace vidkv
