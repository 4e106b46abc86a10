#include <cuda_runtime.h>

#include <atomic>
#include <cstdio>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/error.h"

namespace vidkv {

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  if (status != cudaSuccess) {
    if (why) {
      *why = std::string("CUDA runtime: ") + cudaGetErrorString(status);
      // The runtime gives this one both for a driver older than itself and for no driver at all (a machine
      // without an NVIDIA GPU): say both.
      if (status == cudaErrorInsufficientDriver) *why += "; also reported where no NVIDIA driver is installed or no GPU is present";
    }
    cudaGetLastError();  // clear the sticky error so later calls are not poisoned
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device visible";
  return n;
}

std::string cuda_device_description(int index) {
  cudaDeviceProp prop{};
  const cudaError_t status = cudaGetDeviceProperties(&prop, index);
  if (status != cudaSuccess) return std::string("device ") + std::to_string(index) + ": " + cudaGetErrorString(status);
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.200s, sm_%d%d, %.1f GiB", prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

int cuda_compute_capability(int index) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, index) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return 10 * major + minor;
}

namespace {
std::atomic<int> g_process_device{-1};
}  // namespace

void set_process_cuda_device(int index) {
  g_process_device = index;
  use_process_cuda_device();
}

void use_process_cuda_device() {
  const int index = g_process_device;
  if (index >= 0) cuda_check(cudaSetDevice(index), "cudaSetDevice (the device of this process)");
}

int process_cuda_device() { return g_process_device; }

void cuda_check(int status, const char* what) {
  if (status != cudaSuccess)
    VIDKV_THROW(CudaError, what, ": ", cudaGetErrorString(static_cast<cudaError_t>(status)));
}

CudaDeviceGuard::CudaDeviceGuard(int index) {
  cuda_check(cudaGetDevice(&previous_), "cudaGetDevice");
  if (index != previous_) cuda_check(cudaSetDevice(index), "cudaSetDevice (the cache's device)");
}

CudaDeviceGuard::~CudaDeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
}

}  // namespace vidkv
