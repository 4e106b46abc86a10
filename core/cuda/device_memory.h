// Device memory for the CUDA backend, usable from host-only code (no CUDA headers here).
//
// DeviceBuffer owns `bytes` bytes of device memory (cudaMallocAsync on the given stream, from the device's default
// memory pool, so repeated scratch allocations are cheap; freed with cudaFreeAsync on the same stream). The first
// DeviceBuffer on a device raises that pool's release threshold to "keep everything" (cudaMemPoolAttrReleaseThreshold
// = UINT64_MAX): with CUDA's default of 0, every synchronisation (a decode step's torch.cuda.synchronize) hands the
// freed scratch back to the driver, and the next step's cudaMallocAsync maps it again, which cost the live cache
// about as much host time as the model's own layer (issue 12). Freed scratch then stays reserved in the pool, as
// PyTorch's caching allocator keeps its blocks; release_device_pool() trims it. Copies and
// fills are enqueued on a stream; copy_to_host() and synchronize() wait for it. Every failure throws CudaError
// naming the operation and the size. In a build without CUDA (VIDKV_ENABLE_CUDA=OFF) every function throws
// NotSupportedError saying so; cuda_device_count() (cuda_device.h) tells callers to skip first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace vidkv {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // Allocates `bytes` (0 allowed: no allocation) on the current device, ordered on `stream`.
  explicit DeviceBuffer(std::size_t bytes, void* stream = nullptr);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    DeviceBuffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void swap(DeviceBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    std::swap(stream_, o.stream_);
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  void* stream_ = nullptr;
};

// Host -> device and device -> host copies of `bytes` bytes, enqueued on `stream`. copy_to_host waits for the
// stream (so the host data is ready on return); copy_to_device returns at once for pinned `src` and after the
// source has been read for pageable `src` (CUDA's rules for cudaMemcpyAsync).
void copy_to_device(void* dst, const void* src, std::size_t bytes, void* stream = nullptr);
void copy_to_host(void* dst, const void* src, std::size_t bytes, void* stream = nullptr);
void copy_device_to_device(void* dst, const void* src, std::size_t bytes, void* stream = nullptr);
void fill_device(void* dst, int byte, std::size_t bytes, void* stream = nullptr);
// Waits for every operation enqueued on `stream`; throws CudaError with the first asynchronous error.
void synchronize(void* stream = nullptr);
// Whether every operation enqueued on `stream` has finished, without waiting (cudaStreamQuery); throws CudaError
// with an asynchronous error.
bool stream_idle(void* stream = nullptr);
// Throws CudaError naming `what` when the last kernel launch failed (cudaGetLastError).
void check_launch(const char* what);

// Page-locked host memory (cudaMallocHost) for overlapped transfers; nullptr-safe free.
void* allocate_pinned(std::size_t bytes);
void free_pinned(void* p);

// Owns `bytes` of page-locked host memory (allocate_pinned; none for 0): copy_to_device from it returns at once, so
// the host must not rewrite it before the copy has run (HostSyncEvent tells when).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t bytes) : data_(allocate_pinned(bytes)), bytes_(bytes) {}
  ~PinnedBuffer() { free_pinned(data_); }
  PinnedBuffer(PinnedBuffer&& o) noexcept { swap(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    PinnedBuffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void swap(PinnedBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// A CUDA event without timing (cudaEventDisableTiming), created on first record(): record() marks the work enqueued
// on `stream` so far; wait() blocks the host until that work is done (at once when never recorded). For reusing
// pinned staging memory only after the copy that read it. Throws CudaError naming the call.
class HostSyncEvent {
 public:
  HostSyncEvent() = default;
  ~HostSyncEvent();
  HostSyncEvent(const HostSyncEvent&) = delete;
  HostSyncEvent& operator=(const HostSyncEvent&) = delete;
  void record(void* stream);
  void wait() const;

 private:
  void* event_ = nullptr;  // cudaEvent_t
};

// Waits for the current device, then returns the memory that freed DeviceBuffers left in the stream-ordered pool
// (cudaMemPoolTrimTo(default pool, 0)) to the device, so cudaMemGetInfo shows what is really held. Returns the
// bytes the pool still reserves (in-use allocations). A build without CUDA returns 0.
std::size_t release_device_pool();

// Whether `p` points to device memory (cudaPointerGetAttributes); false in a build without CUDA.
bool is_device_pointer(const void* p);

}  // namespace vidkv
