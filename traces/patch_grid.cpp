#include "vidkv/traces/patch_grid.h"

#include <algorithm>
#include <map>
#include <set>

namespace vidkv {

PatchGrid patch_grid(const TraceTokens& tokens) {
  PatchGrid g;
  std::set<std::int32_t> frames;
  std::map<int, std::int64_t> per_column;  // column -> visual tokens in it
  for (std::int64_t i = 0; i < tokens.size(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    if (tokens.modality[u] != Modality::visual) continue;
    frames.insert(tokens.frame[u]);
    g.rows = std::max(g.rows, tokens.patch_row[u] + 1);
    ++per_column[tokens.patch_col[u]];
  }
  g.frames = static_cast<int>(frames.size());
  if (per_column.empty()) return g;
  g.columns = per_column.rbegin()->first + 1;
  if (per_column.size() > 1 && per_column.rbegin()->second == 1) {
    bool others_wider = true;
    for (auto it = std::next(per_column.rbegin()); it != per_column.rend(); ++it) others_wider = others_wider && it->second > 1;
    if (others_wider) {
      g.extra = 1;
      g.columns = std::next(per_column.rbegin())->first + 1;
    }
  }
  return g;
}

}  // namespace vidkv
