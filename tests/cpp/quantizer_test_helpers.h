// Small helpers shared by the quantizer tests: build a plugin from the registry by name and key/value pairs,
// encode to a byte vector, decode to a float vector, read little-endian fields.
#pragma once
#include "test_registry.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "vidkv/core/config_node.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/quantizer.h"

namespace vidkv::test {

using KeyValues = std::vector<std::pair<std::string, std::string>>;

inline ConfigNode quantizer_block(const std::string& name, const KeyValues& params = {}) {
  ConfigNode n = ConfigNode::map({"test", 1, 1});
  n.set("type", ConfigNode::scalar(name, {"test", 1, 1}));
  int line = 2;
  for (const auto& [k, v] : params) n.set(k, ConfigNode::scalar(v, {"test", line++, 1}));
  return n;
}

inline std::unique_ptr<Quantizer> make(const std::string& name, const KeyValues& params = {}) {
  return test::builtin_registry().make_quantizer(quantizer_block(name, params));
}

inline std::vector<std::uint8_t> encode(const Quantizer& q, const BlockShape& s, const std::vector<float>& x,
                                        const TokenContext& ctx = {}) {
  std::vector<std::uint8_t> out(q.layout(s, ctx).bytes());
  q.encode(x.data(), s, ctx, out.data());
  return out;
}

inline std::vector<float> decode(const Quantizer& q, const BlockShape& s, const std::vector<std::uint8_t>& bytes,
                                 const TokenContext& ctx = {}) {
  std::vector<float> out(static_cast<std::size_t>(s.elements()));
  q.decode(bytes.data(), s, ctx, out.data());
  return out;
}

inline std::vector<float> gaussian(std::size_t n, std::uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

// ||a - b|| / ||a|| (Frobenius), in double.
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(a[i]) * a[i];
  }
  return std::sqrt(num / den);
}

inline std::uint32_t word_at(const std::vector<std::uint8_t>& b, std::size_t byte_offset) {
  return std::uint32_t(b[byte_offset]) | std::uint32_t(b[byte_offset + 1]) << 8 | std::uint32_t(b[byte_offset + 2]) << 16 |
         std::uint32_t(b[byte_offset + 3]) << 24;
}

}  // namespace vidkv::test
