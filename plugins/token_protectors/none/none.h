// none: token protector that protects nothing (budget 0). The "no STP" baseline: mixed_token with this protector
// sends every token to its `rest` quantizer (and still stores its all-zero token mask).
//
// Paper: VidKV (arXiv 2503.16257) Table 3, rows without semantic token protection. No parameters: the budget
// knobs (fraction, count, count_rule, candidates) would be meaningless, so they are not accepted.
#pragma once

#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/token_protector.h"

namespace vidkv {

class NoneProtector : public TokenProtector {
 public:
  struct Params {
    template <class B>
    static void bind(B&) {}
  };
  explicit NoneProtector(const Params&);

  // Never called by protect() (the budget is 0); returns zeros.
  // Nothing is scored (budget 0): the block is never read, on any device.
  bool reads_block() const override { return false; }
  std::vector<double> score(const float* in, const BlockShape& shape, const TokenContext& ctx,
                            const std::vector<std::int32_t>& candidates) const override;
};

void register_none(PluginRegistry& registry);

}  // namespace vidkv
