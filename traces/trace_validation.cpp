// validate_trace: every dataset of a trace checked, one layer resident at a time (see trace_validation.h).
#include "vidkv/traces/trace_validation.h"

#include <set>

#include "vidkv/core/error.h"
#include "vidkv/traces/trace_schema.h"

namespace vidkv {

namespace ts = trace_schema;

std::string TraceValidationReport::summary() const {
  const auto& m = modality_count;
  return detail::concat("ok: ", info.path, ": ", info.num_layers, " layers, ", info.num_kv_heads, " KV heads (",
                        info.num_query_heads, " query heads), head_dim ", info.head_dim, ", ", dtype_name(info.dtype), ", ",
                        info.tokens, " tokens (", m[0], " system, ", m[1], " visual, ", m[2], " query, ", m[3],
                        " generated), ", frames, " frames of ", grid_rows, "x", grid_cols, " patches, ", info.queries,
                        " recorded queries", layer_queries ? " with query states" : "",
                        info.has_embeddings ? ", embeddings" : "", ", ", values_checked, " values checked");
}

TraceValidationReport validate_trace(const std::string& path) {
  TraceReader reader(path);
  TraceValidationReport report;
  report.info = reader.info();
  const TraceInfo& info = report.info;

  const TraceTokens tokens = reader.tokens(/*with_embeddings=*/false);
  std::set<std::int32_t> frames;
  for (std::int64_t i = 0; i < tokens.size(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    const Modality m = tokens.modality[u];
    ++report.modality_count[static_cast<std::size_t>(m)];
    const bool visual = m == Modality::visual;
    if (visual ? tokens.frame[u] < 0 : tokens.frame[u] != -1)
      VIDKV_THROW(IoError, path, ": ", ts::kTokensFrame, ": token ", i, " (", modality_name(m), ") has frame ", tokens.frame[u],
                  visual ? ", expected >= 0 for a visual token" : ", expected -1 for a non-visual token");
    if (visual ? (tokens.patch_row[u] < 0 || tokens.patch_col[u] < 0) : (tokens.patch_row[u] != -1 || tokens.patch_col[u] != -1))
      VIDKV_THROW(IoError, path, ": ", ts::kTokensPatch, ": token ", i, " (", modality_name(m), ") has patch (",
                  tokens.patch_row[u], ", ", tokens.patch_col[u], ")",
                  visual ? ", expected row, col >= 0 for a visual token" : ", expected (-1, -1) for a non-visual token");
    if (visual) {
      frames.insert(tokens.frame[u]);
      report.grid_rows = std::max(report.grid_rows, tokens.patch_row[u] + 1);
      report.grid_cols = std::max(report.grid_cols, tokens.patch_col[u] + 1);
    }
  }
  report.frames = static_cast<int>(frames.size());
  reader.token_ids();
  reader.check_embeddings();
  if (info.has_embeddings) report.values_checked += info.tokens * info.hidden_size;

  const auto positions = reader.query_positions();
  for (std::size_t i = 1; i < positions.size(); ++i)
    if (positions[i] <= positions[i - 1])
      VIDKV_THROW(IoError, path, ": ", ts::kQueryPositions, ": entries must be strictly increasing, but entry ", i, " (",
                  positions[i], ") follows ", positions[i - 1]);

  int layers_with_queries = 0;
  LayerData layer;  // one layer resident at a time, its buffers reused
  for (int l = 0; l < info.num_layers; ++l) {
    reader.read_layer(l, layer);
    report.values_checked += static_cast<std::int64_t>(layer.key.size() + layer.value.size());
    if (layer.queries) {
      ++layers_with_queries;
      report.values_checked += static_cast<std::int64_t>(layer.queries->data.size());
    }
    if (layers_with_queries != 0 && layers_with_queries != l + 1)
      VIDKV_THROW(IoError, path, ": /layers/", std::string(l < 10 ? "00" : l < 100 ? "0" : ""), l, ": query states are recorded in some layers but not in others (layer ",
                  l, (layer.queries ? " has /query, an earlier layer has none)" : " has no /query, an earlier layer has)"));
    ++report.layers_checked;
  }
  report.layer_queries = layers_with_queries == info.num_layers;
  return report;
}

}  // namespace vidkv
