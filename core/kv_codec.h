// A KV codec: the key pipeline and the value pipeline of one configuration, each a (possibly composite) quantizer.
#pragma once

#include <memory>
#include <utility>

#include "vidkv/core/quantizer.h"

namespace vidkv {

class KvCodec {
 public:
  KvCodec(std::unique_ptr<Quantizer> key, std::unique_ptr<Quantizer> value) : key_(std::move(key)), value_(std::move(value)) {}
  const Quantizer& key() const { return *key_; }
  const Quantizer& value() const { return *value_; }

 private:
  std::unique_ptr<Quantizer> key_;
  std::unique_ptr<Quantizer> value_;
};

}  // namespace vidkv
