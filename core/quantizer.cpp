#include "vidkv/core/quantizer.h"

#include <vector>

#include "vidkv/core/error.h"
#include "vidkv/core/thread_scratch.h"

namespace vidkv {

BlockShape block_shape_of(const TensorView& view, const std::string& what) {
  if (view.rank() == 3) return BlockShape{view.shape[0], view.shape[1], view.shape[2]};
  if (view.rank() == 2) return BlockShape{1, view.shape[0], view.shape[1]};
  VIDKV_THROW(ShapeError, what, ": expected [heads, tokens, channels] or [tokens, channels], got ", view.shape_str());
}

namespace {
void require_device(const TensorView& view, const Execution& ex, const std::string& what) {
  VIDKV_REQUIRE(view.device == ex.device, ShapeError, what, ": the view is on ", device_name(view.device),
                " but the call runs on ", device_name(ex.device));
  VIDKV_REQUIRE(view.data != nullptr || view.numel() == 0, ShapeError, what, ": null data");
}
}  // namespace

void Quantizer::encode_view(const TensorView& in, const TokenContext& ctx, std::uint8_t* out, const Execution& ex) const {
  // Messages are built only on failure: on cuda this is the per-call host overhead of every kernel launch.
  const BlockShape shape = in.rank() == 3 ? BlockShape{in.shape[0], in.shape[1], in.shape[2]} : block_shape_of(in, name_ + " encode");
  if (in.device != ex.device || (in.data == nullptr && in.numel() != 0)) require_device(in, ex, name_ + " encode");
  if (ex.on_cuda()) {
    std::string why;
    if (!supports(Device::cuda, shape, &why)) VIDKV_THROW(NotSupportedError, name_, " encode on cuda: ", why);
    return encode_cuda(in, shape, ctx, out, ex);
  }
  if (in.dtype == DType::f32) return encode(static_cast<const float*>(in.data), shape, ctx, out);
  const ThreadScratch values(static_cast<std::size_t>(shape.elements()));
  for (std::int64_t i = 0; i < shape.elements(); ++i) values.data()[i] = load_as_float(in.data, in.dtype, static_cast<std::size_t>(i));
  encode(values.data(), shape, ctx, out);
}

void Quantizer::decode_view(const std::uint8_t* in, const TokenContext& ctx, const TensorView& out, const Execution& ex) const {
  const BlockShape shape = out.rank() == 3 ? BlockShape{out.shape[0], out.shape[1], out.shape[2]} : block_shape_of(out, name_ + " decode");
  if (out.device != ex.device || (out.data == nullptr && out.numel() != 0)) require_device(out, ex, name_ + " decode");
  if (ex.on_cuda()) {
    std::string why;
    if (!supports(Device::cuda, shape, &why)) VIDKV_THROW(NotSupportedError, name_, " decode on cuda: ", why);
    return decode_cuda(in, shape, ctx, out, ex);
  }
  if (out.dtype == DType::f32) return decode(in, shape, ctx, static_cast<float*>(out.data));
  const ThreadScratch values(static_cast<std::size_t>(shape.elements()));
  decode(in, shape, ctx, values.data());
  for (std::int64_t i = 0; i < shape.elements(); ++i) store_from_float(out.data, out.dtype, static_cast<std::size_t>(i), values.data()[i]);
}

bool Quantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (!(shape.heads > 0 && shape.tokens >= 0 && shape.channels > 0)) {
    if (why) *why = "empty head or channel axis in " + shape.str();
    return false;
  }
  if (device == Device::cpu) return true;
#ifndef VIDKV_WITH_CUDA
  if (why) *why = "this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)";
  return false;
#else
  if (cuda_implemented()) return true;
  if (why) *why = name_ + " has no CUDA implementation";
  return false;
#endif
}

KernelTier Quantizer::tier(Device device, const BlockShape&) const {
  return KernelTier{name_ + (device == Device::cuda ? ":cuda" : ":cpu"), true};
}

void Quantizer::encode_cuda(const TensorView&, const BlockShape&, const TokenContext&, std::uint8_t*, const Execution&) const {
  VIDKV_THROW(NotSupportedError, name_, ": no CUDA implementation");
}

void Quantizer::decode_cuda(const std::uint8_t*, const BlockShape&, const TokenContext&, const TensorView&, const Execution&) const {
  VIDKV_THROW(NotSupportedError, name_, ": no CUDA implementation");
}

}  // namespace vidkv
