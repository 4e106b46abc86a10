// Which CUDA devices this process can use. Built with CUDA (VIDKV_ENABLE_CUDA) it asks the runtime; built
// without, it reports that the build has no CUDA backend. GPU tests use it to skip visibly, never to pass.
#pragma once

#include <string>

namespace vidkv {

// Number of usable CUDA devices; 0 with `why` set when none (no driver, no GPU, or a CPU-only build).
int cuda_device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" for device `index`, or the reason it cannot be described.
std::string cuda_device_description(int index);
// Throws CudaError naming `what` when `status` (a cudaError_t) is not success. Defined only in CUDA builds.
void cuda_check(int status, const char* what);

// Makes CUDA device `index` current for this thread until the guard goes out of scope, then restores the previous
// one (cudaSetDevice): device memory and kernels of a call land on the device its data lives on (the live cache
// on a model's cuda:N). Throws CudaError for a bad index; NotSupportedError in a build without CUDA.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int index);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace vidkv
