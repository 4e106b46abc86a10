#include "vidkv/experiments/src/kernel_tiers.h"

#include "vidkv/experiments/src/result_table.h"

namespace vidkv {

std::vector<RunTiers> run_kernel_tiers(const ExperimentPlan& plan, const PluginRegistry& registry, const BlockShape& shape,
                                       Device device) {
  std::vector<RunTiers> out;
  for (const auto& run : plan.runs) {
    RunTiers t;
    t.key = registry.make_quantizer(run.codec.at("key"))->tier(device, shape);
    t.value = registry.make_quantizer(run.codec.at("value"))->tier(device, shape);
    out.push_back(std::move(t));
  }
  return out;
}

std::string inexact_tier_fingerprint(const ExperimentPlan& plan, const std::vector<RunTiers>& tiers) {
  std::string s;
  for (std::size_t i = 0; i < tiers.size() && i < plan.runs.size(); ++i) {
    if (!tiers[i].key.exact) s += "|" + plan.runs[i].name + ":key=" + tiers[i].key.name;
    if (!tiers[i].value.exact) s += "|" + plan.runs[i].name + ":value=" + tiers[i].value.name;
  }
  return s;
}

std::string tiers_json(const RunTiers& t) {
  auto one = [](const KernelTier& k) {
    return std::string("{\"name\": ") + json_quote(k.name) + ", \"exact\": " + (k.exact ? "true" : "false") + "}";
  };
  return "{\"key\": " + one(t.key) + ", \"value\": " + one(t.value) + "}";
}

}  // namespace vidkv
