// Helpers of the [cuda] comparison tests of selectors, protectors and composites: skip without a GPU, blocks as the
// raw elements of fp32 / fp16 / bf16 (what a torch tensor of that dtype holds), upload and download.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "catch.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"

// Skips the test visibly (reported, not passed) where no CUDA device is visible.
#define VIDKV_REQUIRE_CUDA_DEVICE()                                                 \
  do {                                                                              \
    std::string why_no_device;                                                      \
    if (::vidkv::cuda_device_count(&why_no_device) == 0)                            \
      VIDKV_SKIP("no CUDA device: " << why_no_device);                              \
  } while (0)

namespace vidkv::test {

inline const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> d{DType::f32, DType::f16, DType::bf16};
  return d;
}

// fp32 values stored as elements of `t` (rounded to nearest even).
inline std::vector<std::uint8_t> to_dtype_bytes(const std::vector<float>& x, DType t) {
  std::vector<std::uint8_t> out(x.size() * static_cast<std::size_t>(dtype_size(t)));
  for (std::size_t i = 0; i < x.size(); ++i) store_from_float(out.data(), t, i, x[i]);
  return out;
}
// The fp32 values of elements of `t` (exact): what the CPU path works on after encode_view's conversion.
inline std::vector<float> from_dtype_bytes(const std::vector<std::uint8_t>& b, DType t) {
  std::vector<float> out(b.size() / static_cast<std::size_t>(dtype_size(t)));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_as_float(b.data(), t, i);
  return out;
}

inline TensorView view_of(void* data, DType t, Device d, const BlockShape& s) {
  return TensorView{data, t, d, {s.heads, s.tokens, s.channels}};
}

// A device copy of host bytes (at least one byte allocated, so the pointer is never null for an empty block).
inline DeviceBuffer upload(const std::vector<std::uint8_t>& bytes) {
  DeviceBuffer d(bytes.empty() ? 1 : bytes.size());
  copy_to_device(d.data(), bytes.data(), bytes.size());
  return d;
}
// A device buffer of `bytes` bytes filled with 0xAB, so that bytes a kernel forgets to write show up.
inline DeviceBuffer poisoned(std::size_t bytes) {
  DeviceBuffer d(bytes == 0 ? 1 : bytes);
  fill_device(d.data(), 0xAB, bytes == 0 ? 1 : bytes);
  return d;
}
inline std::vector<std::uint8_t> download(const void* device, std::size_t bytes) {
  std::vector<std::uint8_t> out(bytes);
  copy_to_host(out.data(), device, bytes);
  return out;
}

// Index of the first differing byte, or -1.
inline long long first_difference(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return static_cast<long long>(i);
  return -1;
}

}  // namespace vidkv::test
