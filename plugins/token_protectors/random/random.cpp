#include "vidkv/plugins/token_protectors/random/random.h"

namespace vidkv {

std::vector<double> RandomProtector::score(const float*, const BlockShape&, const TokenContext& ctx,
                                           const std::vector<std::int32_t>& candidates) const {
  const std::uint64_t state = splitmix64_mix(ctx.seed) ^ splitmix64_mix(static_cast<std::uint64_t>(ctx.layer) + 1);
  std::vector<double> out;
  out.reserve(candidates.size());
  for (std::int32_t local : candidates) {
    const auto t = static_cast<std::uint64_t>(ctx.trace_index(local));
    out.push_back(static_cast<double>(splitmix64_output(state, t) >> 11));  // 53 bits: exact in a double
  }
  return out;
}

void register_random(PluginRegistry& registry) {
  registry.add<RandomProtector>("random", "RTP: protects uniformly random candidate tokens, seeded by the run seed and the layer");
}

}  // namespace vidkv
