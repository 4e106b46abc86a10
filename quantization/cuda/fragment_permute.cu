// Device permutations of a whole block between layout dense and the fragment layout (fragment_permute.h): one thread
// per byte of the codes section written (group_format::fragment_byte_from_dense / dense_byte_from_fragment) and one
// per metadata entry (group_format::group_major_meta_entry), so no two threads write the same byte.
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/fragment_permute.h"

namespace vidkv::fragment_permute_cuda {

namespace {

using fragment_permute::BlockSections;
using group_format::FragmentForm;
using group_format::GroupGrid;

__global__ void fragment_from_dense_kernel(GroupGrid g, FragmentForm f, const std::uint8_t* dense, std::uint8_t* fragment,
                                           std::int64_t bytes) {
  const std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < bytes) fragment[b] = group_format::fragment_byte_from_dense(g, f, dense, b);
}
__global__ void dense_from_fragment_kernel(GroupGrid g, FragmentForm f, const std::uint8_t* fragment, std::uint8_t* dense,
                                           std::int64_t bytes) {
  const std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < bytes) dense[b] = group_format::dense_byte_from_fragment(g, f, fragment, b);
}
// `sections` metadata sections between the canonical order and the group-major one, one thread per entry.
__global__ void group_major_meta_kernel(GroupGrid g, int size, int sections, const std::uint8_t* from, std::uint8_t* to,
                                        bool to_group_major) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < sections * g.group_count()) group_format::group_major_meta_entry(g, size, from, to, i, to_group_major);
}

}  // namespace

void dense_to_fragment(const BlockSections& s, std::uint8_t* bytes, void* stream, const char* who) {
  if (group_format::fragment_all_tail(s.grid)) return;  // dense's bytes already
  auto* st = static_cast<cudaStream_t>(stream);
  const auto n = static_cast<std::int64_t>(s.code_bytes());
  DeviceBuffer dense(s.moved_bytes(), stream);
  copy_device_to_device(dense.data(), bytes, s.moved_bytes(), stream);
  fragment_from_dense_kernel<<<group_cuda::blocks_for(n), group_cuda::kThreads, 0, st>>>(s.grid, s.form,
                                                                                         dense.as<std::uint8_t>(), bytes, n);
  check_launch(who);
  if (s.group_major()) {
    const std::int64_t entries = s.meta_sections * s.grid.group_count();
    group_major_meta_kernel<<<group_cuda::blocks_for(entries), group_cuda::kThreads, 0, st>>>(
        s.grid, s.meta_size, s.meta_sections, dense.as<std::uint8_t>() + n, bytes + n, true);
    check_launch(who);
  }
}

void fragment_to_dense(const BlockSections& s, const std::uint8_t* fragment, std::uint8_t* dense, std::size_t total,
                       void* stream, const char* who) {
  if (group_format::fragment_all_tail(s.grid)) {
    copy_device_to_device(dense, fragment, total, stream);
    return;
  }
  auto* st = static_cast<cudaStream_t>(stream);
  const auto n = static_cast<std::int64_t>(s.code_bytes());
  dense_from_fragment_kernel<<<group_cuda::blocks_for(n), group_cuda::kThreads, 0, st>>>(s.grid, s.form, fragment, dense, n);
  check_launch(who);
  std::size_t kept = static_cast<std::size_t>(n);  // the first byte copied as it is
  if (s.group_major()) {
    const std::int64_t entries = s.meta_sections * s.grid.group_count();
    group_major_meta_kernel<<<group_cuda::blocks_for(entries), group_cuda::kThreads, 0, st>>>(
        s.grid, s.meta_size, s.meta_sections, fragment + n, dense + n, false);
    check_launch(who);
    kept += s.meta_bytes();
  }
  if (total > kept) copy_device_to_device(dense + kept, fragment + kept, total - kept, stream);
}

}  // namespace vidkv::fragment_permute_cuda
