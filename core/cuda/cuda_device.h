// Which CUDA devices this process can use. Built with CUDA (VIDKV_ENABLE_CUDA) it asks the runtime; built
// without, it reports that the build has no CUDA backend. GPU tests use it to skip visibly, never to pass.
#pragma once

#include <string>

namespace vidkv {

// Number of usable CUDA devices; 0 with `why` set when none (no driver, no GPU, or a CPU-only build).
int cuda_device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" for device `index`, or the reason it cannot be described.
std::string cuda_device_description(int index);
// Compute capability of device `index` as 10 major + minor (90 for an H100 / H200); 0 when it cannot be asked (no
// such device, or a CPU-only build).
int cuda_compute_capability(int index);
// The device of this process: an MPI rank takes device local_rank % cuda_device_count() of its node
// (docs/distributed.md). set_process_cuda_device remembers it and makes it current on the calling thread;
// use_process_cuda_device makes it current on the calling thread (CUDA's current device is per thread, so every
// thread that launches work on it calls this first; nothing when no device was set, leaving CUDA's default, 0).
// In a CPU-only build the index is remembered and nothing else happens.
void set_process_cuda_device(int index);
void use_process_cuda_device();
// The remembered device, -1 when none was set.
int process_cuda_device();
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
