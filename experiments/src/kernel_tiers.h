// The kernel tier of each run (Quantizer::tier: which implementation encodes and decodes, and whether its bytes
// equal the CPU reference's), written to provenance.json; inexact tiers (FFT paths within a tolerance) also enter
// the resume fingerprint, so a results folder never mixes cells of different inexact tiers.
#pragma once

#include <string>
#include <vector>

#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/quantizer.h"
#include "vidkv/experiments/src/experiment_plan.h"

namespace vidkv {

struct RunTiers {
  KernelTier key, value;
};

// The tiers of every run of `plan` (in plan order) on `device` (the plan's backend, or the cpu for the host replay
// of the decode-step metrics), for blocks of `shape` (the runner passes the KV shape of the first trace).
std::vector<RunTiers> run_kernel_tiers(const ExperimentPlan& plan, const PluginRegistry& registry, const BlockShape& shape,
                                       Device device);
inline std::vector<RunTiers> run_kernel_tiers(const ExperimentPlan& plan, const PluginRegistry& registry, const BlockShape& shape) {
  return run_kernel_tiers(plan, registry, shape, plan.backend);
}
// "|run:key=tier" for every inexact tier, in plan order ("" when every tier is exact).
std::string inexact_tier_fingerprint(const ExperimentPlan& plan, const std::vector<RunTiers>& tiers);
// provenance.json value of one run's tiers: {"key": {"name": ..., "exact": ...}, "value": {...}}.
std::string tiers_json(const RunTiers& t);

}  // namespace vidkv
