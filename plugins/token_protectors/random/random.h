// random: random token protection (RTP), the ablation baseline of VidKV's semantic token protection.
//
// Paper: VidKV (arXiv 2503.16257) Table 3, "RTP": the same number of tokens as STP, chosen uniformly at random
// among the candidates. Not in the released code.
// Sampling (own code, identical on every standard library): the candidate with trace token index t gets the key
//   u_t = splitmix64_output(s, t),  s = splitmix64_mix(seed) ^ splitmix64_mix(layer + 1)
// where splitmix64_output(s, t) = splitmix64_mix(s + (t + 1) * 0x9E3779B97F4A7C15) is the t-th output of a
// splitmix64 generator started at state s; the score is the top 53 bits of u_t (exact in a double). Keeping the
// n largest of i.i.d. uniform keys is a uniformly random n-subset. Keys depend on the trace token index, not on
// the block: a token keeps its key in every block it appears in, and every KV head shares the selection.
// Stores nothing itself: mixed_token stores the protected set as a 1-bit-per-token mask, ceil(T / 8) bytes per block.
#pragma once

#include <cstdint>

#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/token_protector.h"

namespace vidkv {

// splitmix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
constexpr std::uint64_t splitmix64_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Output number i (0-based) of a splitmix64 generator whose state starts at `state`.
constexpr std::uint64_t splitmix64_output(std::uint64_t state, std::uint64_t i) {
  return splitmix64_mix(state + (i + 1) * 0x9E3779B97F4A7C15ull);
}
// Reference values of splitmix64 seeded with 0 (outputs 0 and 1 of the published generator).
static_assert(splitmix64_output(0, 0) == 0xE220A8397B1DCDAFull);
static_assert(splitmix64_output(0, 1) == 0x6E789E6AA1B965F4ull);

class RandomProtector : public TokenProtector {
 public:
  struct Params : TokenProtectionParams {
    template <class B>
    static void bind(B& b) { bind_protection<Params>(b); }
  };
  explicit RandomProtector(const Params& p) : TokenProtector(p) {}

  // Scores depend only on the seed, the layer and the candidates' trace token indices (splitmix64 keys), never on
  // the block: on cuda too they are computed on the host (a few ns per candidate; the top-k is a host decision
  // anyway), so the block stays on the device and the selection equals the CPU's by construction.
  bool reads_block() const override { return false; }
  std::vector<double> score(const float* in, const BlockShape& shape, const TokenContext& ctx,
                            const std::vector<std::int32_t>& candidates) const override;
};

void register_random(PluginRegistry& registry);

}  // namespace vidkv
