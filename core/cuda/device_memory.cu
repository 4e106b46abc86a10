// CUDA runtime implementation of device_memory.h.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"

namespace vidkv {

namespace {
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Once per device (and again after release_device_pool() trimmed it, which keeps the threshold): the default pool
// keeps freed blocks instead of returning them to the driver at every synchronisation (device_memory.h).
void keep_pool_memory() {
  static std::atomic<std::uint64_t> configured{0};  // bit d: device d's pool is configured
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return;
  const std::uint64_t bit = std::uint64_t{1} << device;
  if (configured.load(std::memory_order_relaxed) & bit) return;
  cudaMemPool_t pool = nullptr;
  if (cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess) return;
  std::uint64_t keep = UINT64_MAX;
  if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  configured.fetch_or(bit, std::memory_order_relaxed);
}

void check(cudaError_t status, const char* what, std::size_t bytes) {
  if (status != cudaSuccess)
    VIDKV_THROW(CudaError, what, " (", bytes, " bytes): ", cudaGetErrorString(status));
}
}  // namespace

DeviceBuffer::DeviceBuffer(std::size_t bytes, void* stream) : bytes_(bytes), stream_(stream) {
  if (bytes == 0) return;
  keep_pool_memory();
  check(cudaMallocAsync(&data_, bytes, as_stream(stream)), "cudaMallocAsync", bytes);
}

DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFreeAsync(data_, as_stream(stream_));
}

void copy_to_device(void* dst, const void* src, std::size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)), "copy host to device", bytes);
}

void copy_to_host(void* dst, const void* src, std::size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)), "copy device to host", bytes);
  check(cudaStreamSynchronize(as_stream(stream)), "copy device to host (synchronize)", bytes);
}

void copy_device_to_device(void* dst, const void* src, std::size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)), "copy device to device", bytes);
}

void fill_device(void* dst, int byte, std::size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemsetAsync(dst, byte, bytes, as_stream(stream)), "cudaMemsetAsync", bytes);
}

void synchronize(void* stream) { check(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize", 0); }

bool stream_idle(void* stream) {
  const cudaError_t status = cudaStreamQuery(as_stream(stream));
  if (status == cudaErrorNotReady) return false;
  check(status, "cudaStreamQuery", 0);
  return true;
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) VIDKV_THROW(CudaError, what, ": kernel launch failed: ", cudaGetErrorString(status));
}

void* allocate_pinned(std::size_t bytes) {
  void* p = nullptr;
  if (bytes) check(cudaMallocHost(&p, bytes), "cudaMallocHost", bytes);
  return p;
}

void free_pinned(void* p) {
  if (p) cudaFreeHost(p);
}

HostSyncEvent::~HostSyncEvent() {
  if (event_) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

void HostSyncEvent::record(void* stream) {
  if (!event_) {
    cudaEvent_t e = nullptr;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags", 0);
    event_ = e;
  }
  check(cudaEventRecord(static_cast<cudaEvent_t>(event_), as_stream(stream)), "cudaEventRecord", 0);
}

void HostSyncEvent::wait() const {
  if (event_) check(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)), "cudaEventSynchronize", 0);
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

std::size_t release_device_pool() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice", 0);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize", 0);
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool", 0);
  check(cudaMemPoolTrimTo(pool, 0), "cudaMemPoolTrimTo", 0);
  std::uint64_t reserved = 0;
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved), "cudaMemPoolGetAttribute", 0);
  return static_cast<std::size_t>(reserved);
}

}  // namespace vidkv
