// Shard specs, cell cost estimates and the longest-processing-time partition (cell_partition.h).
#include "vidkv/experiments/src/cell_partition.h"

#include <algorithm>
#include <charconv>
#include <numeric>

#include "vidkv/core/error.h"

namespace vidkv {

namespace {

constexpr int kMaxShards = 100000;

// Adds the plugin blocks below `node` (maps that name a quantizer or a plugin type) to `cost`; `key` is the key
// under which `node` sits in its parent.
void add_plugin_costs(const ConfigNode& node, const std::string& key, double& cost) {
  if (node.is_map()) {
    if (node.find("quantizer") || node.find("type")) cost += key == "protector" ? 1.0 : 0.25;
    for (const auto& [k, child] : node.entries()) add_plugin_costs(child, k, cost);
  } else if (node.is_list()) {
    for (const auto& child : node.items()) add_plugin_costs(child, key, cost);
  }
}

}  // namespace

std::string ShardSpec::str() const { return std::to_string(index) + "/" + std::to_string(count); }

ShardSpec parse_shard_spec(const std::string& text) {
  const auto slash = text.find('/');
  auto parse = [&](std::size_t begin, std::size_t end, int& out) {
    const char* first = text.data() + begin;
    const char* last = text.data() + end;
    const auto [ptr, ec] = std::from_chars(first, last, out);
    return begin < end && ec == std::errc() && ptr == last;
  };
  ShardSpec s;
  if (slash == std::string::npos || !parse(0, slash, s.index) || !parse(slash + 1, text.size(), s.count))
    VIDKV_THROW(ConfigError, "--shard '", text, "': expected i/N, two integers (shard i of N, counted from 0), e.g. 0/4");
  if (s.count < 1 || s.count > kMaxShards)
    VIDKV_THROW(ConfigError, "--shard '", text, "': N must be between 1 and ", kMaxShards);
  if (s.index < 0 || s.index >= s.count)
    VIDKV_THROW(ConfigError, "--shard '", text, "': i must be between 0 and N - 1 = ", s.count - 1,
                " (shards are counted from 0, as Slurm's --array=0-", s.count - 1, ")");
  return s;
}

double codec_cost(const RunPlan& run) {
  double cost = 1.0;
  add_plugin_costs(run.codec, "", cost);
  return cost;
}

std::vector<double> cell_costs(const ExperimentPlan& plan, const std::vector<TraceSize>& traces) {
  if (traces.size() != plan.traces.size())
    VIDKV_THROW(ValueError, "cell_costs: ", traces.size(), " trace sizes for ", plan.traces.size(), " traces");
  std::vector<double> out;
  out.reserve(plan.runs.size() * traces.size());
  for (const RunPlan& run : plan.runs) {
    const double c = codec_cost(run);
    for (const TraceSize& t : traces)
      out.push_back(static_cast<double>(t.layers) * static_cast<double>(t.kv_heads) * static_cast<double>(t.tokens) *
                    static_cast<double>(t.head_dim) * c);
  }
  return out;
}

std::vector<int> partition_cells(const std::vector<double>& costs, int shards) {
  if (shards < 1) VIDKV_THROW(ValueError, "partition_cells: ", shards, " shards (need at least 1)");
  std::vector<std::size_t> order(costs.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<std::size_t>(shards), 0.0);
  std::vector<int> owner(costs.size(), 0);
  for (const std::size_t cell : order) {
    const auto least = std::min_element(load.begin(), load.end());  // the first of equal loads: the lower shard
    owner[cell] = static_cast<int>(least - load.begin());
    *least += costs[cell];
  }
  return owner;
}

}  // namespace vidkv
