// Non-owning views over host or device memory, and an owning, aligned host tensor.
//
// Plugins work on fp32 blocks `[heads, tokens, channels]` (BlockShape); traces and the live hook hand over fp16,
// bf16 or fp32 tensors of any rank, converted at the edges with to_float().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vidkv/core/dtype.h"

namespace vidkv {

enum class Device : std::uint8_t { cpu, cuda };
std::string device_name(Device d);
Device parse_device(const std::string& text, const std::string& what);

// The unit every plugin works on: the K (or V) of one layer, `heads` KV heads, each a row-major
// `[tokens, channels]` slab. A single slab is heads == 1.
struct BlockShape {
  std::int64_t heads = 1;
  std::int64_t tokens = 0;
  std::int64_t channels = 0;

  std::int64_t elements() const { return heads * tokens * channels; }
  std::int64_t slab_elements() const { return tokens * channels; }
  bool operator==(const BlockShape& o) const { return heads == o.heads && tokens == o.tokens && channels == o.channels; }
  std::string str() const;  // "[heads x tokens x channels]"
};

// A strided-free (contiguous, row-major) view of `shape` elements of `dtype` on `device`.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  std::vector<std::int64_t> shape;

  std::int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  int rank() const { return static_cast<int>(shape.size()); }
  std::string shape_str() const;  // "[2, 3, 4] fp16"
  // Throws ShapeError naming `what` unless the rank and, where expected[i] >= 0, each extent match.
  void require_shape(const std::vector<std::int64_t>& expected, const std::string& what) const;
};

// Owning host tensor, 64-byte aligned (one cache line; AVX-512 loads); from 2 MiB on, on transparent huge pages
// (core/host_memory.h).
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(std::vector<std::int64_t> shape, DType dtype);

  TensorView view() const { return TensorView{data_.get(), dtype_, Device::cpu, shape_}; }
  template <class T>
  T* data() {
    return reinterpret_cast<T*>(data_.get());
  }
  template <class T>
  const T* data() const {
    return reinterpret_cast<const T*>(data_.get());
  }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  std::int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> data_;
  std::vector<std::int64_t> shape_;
  DType dtype_ = DType::f32;
};

// Converts any host view to a contiguous fp32 vector (exact for fp16/bf16).
std::vector<float> to_float(const TensorView& view);
// Converts fp32 values to `dtype`, rounding to nearest even, into `out` (out.numel() == values.size()).
void from_float(const std::vector<float>& values, const TensorView& out);

}  // namespace vidkv
