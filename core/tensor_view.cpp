#include "vidkv/core/tensor_view.h"

#include <cstdlib>
#include <sstream>

#include "vidkv/core/error.h"
#include "vidkv/core/host_memory.h"

namespace vidkv {

std::string device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Device parse_device(const std::string& text, const std::string& what) {
  if (text == "cpu") return Device::cpu;
  if (text == "cuda") return Device::cuda;
  VIDKV_THROW(ConfigError, what, ": unknown backend '", text, "' (valid: cpu, cuda)");
}

std::string BlockShape::str() const {
  return detail::concat("[", heads, " heads x ", tokens, " tokens x ", channels, " channels]");
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string TensorView::shape_str() const {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += detail::concat(i ? ", " : "", shape[i]);
  return out + "] " + dtype_name(dtype);
}

void TensorView::require_shape(const std::vector<std::int64_t>& expected, const std::string& what) const {
  bool ok = expected.size() == shape.size();
  for (std::size_t i = 0; ok && i < expected.size(); ++i) ok = expected[i] < 0 || expected[i] == shape[i];
  if (!ok) {
    std::string want = "[";
    for (std::size_t i = 0; i < expected.size(); ++i)
      want += expected[i] < 0 ? std::string(i ? ", *" : "*") : detail::concat(i ? ", " : "", expected[i]);
    want += "]";
    VIDKV_THROW(ShapeError, what, ": expected shape ", want, ", got ", shape_str());
  }
}

HostTensor::HostTensor(std::vector<std::int64_t> shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  const std::size_t bytes = nbytes();
  void* p = allocate_host_block(bytes);  // core/host_memory.h: huge pages for layer-sized tensors
  if (bytes && !p) VIDKV_THROW(Error, "out of memory allocating ", bytes, " bytes for a host tensor");
  data_.reset(static_cast<std::byte*>(p));
}

std::int64_t HostTensor::numel() const {
  std::int64_t n = 1;
  for (auto d : shape_) n *= d;
  return n;
}

void HostTensor::Free::operator()(std::byte* p) const { std::free(p); }

std::vector<float> to_float(const TensorView& view) {
  VIDKV_REQUIRE(view.device == Device::cpu, NotSupportedError, "to_float: tensor ", view.shape_str(), " is on ",
                device_name(view.device), ", expected host memory");
  std::vector<float> out(static_cast<std::size_t>(view.numel()));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_as_float(view.data, view.dtype, i);
  return out;
}

void from_float(const std::vector<float>& values, const TensorView& out) {
  VIDKV_REQUIRE(out.device == Device::cpu, NotSupportedError, "from_float: destination is on ", device_name(out.device));
  VIDKV_REQUIRE(static_cast<std::int64_t>(values.size()) == out.numel(), ShapeError, "from_float: ", values.size(),
                " values for a tensor of ", out.shape_str());
  for (std::size_t i = 0; i < values.size(); ++i) store_from_float(out.data, out.dtype, i, values[i]);
}

}  // namespace vidkv
