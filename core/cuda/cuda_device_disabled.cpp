// CPU-only build (VIDKV_ENABLE_CUDA=OFF): there is no CUDA backend, so there are no devices to use.
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/error.h"

namespace vidkv {

int cuda_device_count(std::string* why) {
  if (why) *why = "this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)";
  return 0;
}

std::string cuda_device_description(int index) { return "device " + std::to_string(index) + ": no CUDA backend in this build"; }
int cuda_compute_capability(int) { return 0; }

namespace {
int g_process_device = -1;
}  // namespace

void set_process_cuda_device(int index) { g_process_device = index; }
void use_process_cuda_device() {}
int process_cuda_device() { return g_process_device; }

void cuda_check(int, const char* what) { VIDKV_THROW(NotSupportedError, what, ": this build has no CUDA backend"); }

CudaDeviceGuard::CudaDeviceGuard(int) { VIDKV_THROW(NotSupportedError, "cuda device: this build has no CUDA backend"); }
CudaDeviceGuard::~CudaDeviceGuard() = default;

}  // namespace vidkv

// device_memory.h without CUDA: nothing can be allocated or copied on a device.
#include "vidkv/core/cuda/device_memory.h"

namespace vidkv {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  VIDKV_THROW(NotSupportedError, what, ": this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)");
}
}  // namespace

DeviceBuffer::DeviceBuffer(std::size_t bytes, void*) : bytes_(bytes) {
  if (bytes) no_cuda("device allocation");
}
DeviceBuffer::~DeviceBuffer() = default;
void copy_to_device(void*, const void*, std::size_t, void*) { no_cuda("copy to device"); }
void copy_to_host(void*, const void*, std::size_t, void*) { no_cuda("copy to host"); }
void copy_device_to_device(void*, const void*, std::size_t, void*) { no_cuda("device copy"); }
void fill_device(void*, int, std::size_t, void*) { no_cuda("device fill"); }
void synchronize(void*) { no_cuda("synchronize"); }
bool stream_idle(void*) { no_cuda("stream query"); }
void check_launch(const char* what) { no_cuda(what); }
void* allocate_pinned(std::size_t) { no_cuda("pinned allocation"); }
void free_pinned(void*) {}
HostSyncEvent::~HostSyncEvent() = default;
void HostSyncEvent::record(void*) { no_cuda("event record"); }
void HostSyncEvent::wait() const {}
bool is_device_pointer(const void*) { return false; }
std::size_t release_device_pool() { return 0; }

}  // namespace vidkv
