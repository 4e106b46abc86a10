#include "vidkv/plugins/token_protectors/none/none.h"

namespace vidkv {

namespace {
TokenProtectionParams zero_budget() {
  TokenProtectionParams p;
  p.fraction = 0.0;
  p.count = 0;  // exact count 0: budget() is 0 for any number of candidates
  return p;
}
}  // namespace

NoneProtector::NoneProtector(const Params&) : TokenProtector(zero_budget()) {}

std::vector<double> NoneProtector::score(const float*, const BlockShape&, const TokenContext&,
                                         const std::vector<std::int32_t>& candidates) const {
  return std::vector<double>(candidates.size(), 0.0);
}

void register_none(PluginRegistry& registry) {
  registry.add<NoneProtector>("none", "protects no token (budget 0): the baseline without token protection");
}

}  // namespace vidkv
