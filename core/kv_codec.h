// A KV codec: the key pipeline and the value pipeline of one configuration, each a (possibly composite) quantizer.
#pragma once

#include <memory>
#include <utility>

#include "vidkv/core/env_switch.h"
#include "vidkv/core/quantizer.h"

namespace vidkv {

class KvCodec {
 public:
  KvCodec(std::unique_ptr<Quantizer> key, std::unique_ptr<Quantizer> value) : key_(std::move(key)), value_(std::move(value)) {}
  const Quantizer& key() const { return *key_; }
  const Quantizer& value() const { return *value_; }

  // A layer's keys, then its values: key().encode_view(key, ...) and value().encode_view(value, ...) on ex. On cuda
  // (unless VIDKV_CUDA_PAIRED_LAUNCH=off, read once per process), the values' call is made with
  // Execution::after_independent_kernel (execution.h) where the keys' block is not empty, so that its first kernel may
  // run beside the end of the keys' last one (kivi-2 at 32k: about 1 point more of the copy bandwidth on an H100,
  // docs/performance.md section 6). The caller's part of that promise: the four buffers were allocated and the
  // inputs written before this call, and none overlaps another. The keys' call never carries the flag. Errors: as
  // Quantizer::encode_view's.
  void encode_pair(const TensorView& key, const TensorView& value, const TokenContext& ctx, std::uint8_t* key_out,
                   std::uint8_t* value_out, const Execution& ex) const {
    key_->encode_view(key, ctx, key_out, ex.with_independence(false));
    value_->encode_view(value, ctx, value_out, ex.with_independence(pairs_values(ex) && key.numel() > 0));
  }
  // The same for decode_view: the keys' bytes into key_out, then the values' into value_out.
  void decode_pair(const std::uint8_t* key_in, const std::uint8_t* value_in, const TokenContext& ctx,
                   const TensorView& key_out, const TensorView& value_out, const Execution& ex) const {
    key_->decode_view(key_in, ctx, key_out, ex.with_independence(false));
    value_->decode_view(value_in, ctx, value_out, ex.with_independence(pairs_values(ex) && key_out.numel() > 0));
  }
  // Whether a pair on `ex` makes the values' call with after_independent_kernel: on cuda, unless
  // VIDKV_CUDA_PAIRED_LAUNCH=off. For callers that pair the two calls themselves under the same promise (LayerCache).
  static bool pairs_values(const Execution& ex) {
    static const bool off = env_equals("VIDKV_CUDA_PAIRED_LAUNCH", "off");
    return ex.on_cuda() && !off;
  }

 private:
  std::unique_ptr<Quantizer> key_;
  std::unique_ptr<Quantizer> value_;
};

}  // namespace vidkv
