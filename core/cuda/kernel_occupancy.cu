// kernel_occupancy.h: a small table under a mutex (a handful of entries: kernels x shapes x devices).
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "vidkv/core/cuda/kernel_occupancy.h"
#include "vidkv/core/error.h"

namespace vidkv::cuda_kernels {

namespace {

struct SmemLimit {  // the dynamic shared memory `kernel` was allowed on `device`
  int device;
  const void* kernel;
  std::size_t smem;
};
struct Occupancy {
  int device;
  const void* kernel;
  int threads;
  std::size_t smem;
  int blocks;
};
struct Multiprocessors {
  int device;
  int count;
};

constexpr std::size_t kDefaultDynamicSmem = 48 * 1024;

std::mutex table_mutex;
std::vector<SmemLimit> smem_limits;
std::vector<Occupancy> occupancies;
std::vector<Multiprocessors> multiprocessor_counts;

void check(cudaError_t e, const char* what, const char* call) {
  if (e != cudaSuccess) VIDKV_THROW(CudaError, what, ": ", call, ": ", cudaGetErrorString(e));
}

int current_device(const char* what) {
  int device = 0;
  check(cudaGetDevice(&device), what, "cudaGetDevice");
  return device;
}

// Under table_mutex.
void allow_locked(int device, const void* kernel, std::size_t smem, const char* what) {
  auto it = std::find_if(smem_limits.begin(), smem_limits.end(),
                         [&](const SmemLimit& l) { return l.device == device && l.kernel == kernel; });
  if (it != smem_limits.end() && it->smem >= smem) return;
  // Never below CUDA's default of 48 KB: a launch that relies on the default (no call here) must still fit.
  const std::size_t limit = std::max<std::size_t>(smem, kDefaultDynamicSmem);
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(limit)), what,
        "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  if (it != smem_limits.end()) it->smem = limit;
  else smem_limits.push_back({device, kernel, limit});
}

}  // namespace

void allow_dynamic_smem(const void* kernel, std::size_t smem, const char* what) {
  const int device = current_device(what);
  const std::lock_guard<std::mutex> lock(table_mutex);
  allow_locked(device, kernel, smem, what);
}

int resident_blocks(const void* kernel, int threads, std::size_t smem, const char* what) {
  const int device = current_device(what);
  const std::lock_guard<std::mutex> lock(table_mutex);
  for (const Occupancy& o : occupancies)
    if (o.device == device && o.kernel == kernel && o.threads == threads && o.smem == smem) return o.blocks;
  allow_locked(device, kernel, smem, what);
  int n = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem), what,
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  n = std::max(n, 1);
  occupancies.push_back({device, kernel, threads, smem, n});
  return n;
}

int multiprocessors() {
  const int device = current_device("multiprocessor count");
  const std::lock_guard<std::mutex> lock(table_mutex);
  for (const Multiprocessors& m : multiprocessor_counts)
    if (m.device == device) return m.count;
  int n = 0;
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "multiprocessor count",
        "cudaDeviceGetAttribute(MultiProcessorCount)");
  multiprocessor_counts.push_back({device, n});
  return n;
}

}  // namespace vidkv::cuda_kernels
