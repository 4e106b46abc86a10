// validate_trace: every dataset of a trace checked, one layer resident at a time (see trace_validation.h).
#include "vidkv/traces/trace_validation.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "vidkv/core/error.h"
#include "vidkv/traces/patch_grid.h"
#include "vidkv/traces/trace_isolation.h"
#include "vidkv/traces/trace_schema.h"

namespace vidkv {

namespace ts = trace_schema;

std::string TraceValidationReport::summary() const {
  const auto& m = modality_count;
  return detail::concat("ok: ", info.path, ": ", info.num_layers, " layers, ", info.num_kv_heads, " KV heads (",
                        info.num_query_heads, " query heads), head_dim ", info.head_dim, ", ", dtype_name(info.dtype), ", ",
                        info.tokens, " tokens (", m[0], " context text, ", m[1], " visual, ", m[2], " query, ", m[3],
                        " generated), ", frames, " frames of ", grid_rows, "x", grid_cols, " patches",
                        grid_extra ? detail::concat(" + ", grid_extra, " closing token") : std::string(), ", ", info.queries,
                        " recorded queries", layer_queries ? " with query states" : "",
                        info.has_embeddings ? ", embeddings" : "", ", ", values_checked, " values checked");
}

namespace {

std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
constexpr std::uint64_t kFnvBasis = 1469598103934665603ull;

// Every check, in this process (validate_trace runs it in a child process).
TraceValidationReport validate_in_process(const std::string& path, LayerParts parts) {
  TraceReader reader(path);
  TraceValidationReport report;
  report.info = reader.info();
  const TraceInfo& info = report.info;

  const TraceTokens tokens = reader.tokens(/*with_embeddings=*/false);
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
  }
  const PatchGrid grid = patch_grid(tokens);
  report.frames = grid.frames;
  report.grid_rows = grid.rows;
  report.grid_cols = grid.columns;
  report.grid_extra = grid.extra;
  reader.token_ids();
  reader.check_embeddings();
  if (info.has_embeddings) report.values_checked += info.tokens * info.hidden_size;

  const auto positions = parts.queries ? reader.query_positions() : std::vector<std::int32_t>{};
  for (std::size_t i = 1; i < positions.size(); ++i)
    if (positions[i] <= positions[i - 1])
      VIDKV_THROW(IoError, path, ": ", ts::kQueryPositions, ": entries must be strictly increasing, but entry ", i, " (",
                  positions[i], ") follows ", positions[i - 1]);

  int layers_with_queries = 0;
  LayerData layer;  // one layer resident at a time, its buffers reused
  for (int l = 0; l < info.num_layers; ++l) {
    reader.read_layer(l, layer, parts);
    // Without the query part, the layer's query shape is the trace's (the extents were checked at open).
    const bool has_queries = parts.queries ? layer.queries.has_value() : reader.has_layer_queries(l);
    const std::int64_t shape[5] = {layer.heads, layer.tokens, layer.dim, has_queries ? info.num_query_heads : 0,
                                   has_queries ? info.queries : 0};
    report.shapes_hash = fnv1a(report.shapes_hash ? report.shapes_hash : kFnvBasis, shape, sizeof shape);
    report.values_checked += static_cast<std::int64_t>(layer.key.size() + layer.value.size());
    if (has_queries) ++layers_with_queries;
    if (layer.queries) report.values_checked += static_cast<std::int64_t>(layer.queries->data.size());
    if (layers_with_queries != 0 && layers_with_queries != l + 1)
      VIDKV_THROW(IoError, path, ": /layers/", std::string(l < 10 ? "00" : l < 100 ? "0" : ""), l, ": query states are recorded in some layers but not in others (layer ",
                  l, (has_queries ? " has /query, an earlier layer has none)" : " has no /query, an earlier layer has)"));
    ++report.layers_checked;
  }
  report.layer_queries = layers_with_queries == info.num_layers;
  return report;
}

std::string encode(const TraceValidationReport& r) {
  std::ostringstream s;
  for (auto c : r.modality_count) s << c << ' ';
  s << r.frames << ' ' << r.grid_rows << ' ' << r.grid_cols << ' ' << r.layers_checked << ' ' << r.layer_queries << ' '
    << r.values_checked << ' ' << r.shapes_hash;
  return s.str();
}

void decode(const std::string& text, TraceValidationReport& r) {
  std::istringstream s(text);
  for (auto& c : r.modality_count) s >> c;
  s >> r.frames >> r.grid_rows >> r.grid_cols >> r.layers_checked >> r.layer_queries >> r.values_checked >> r.shapes_hash;
}

}  // namespace

std::string trace_identity(const std::string& path, std::uint64_t shapes_hash) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) VIDKV_THROW(IoError, path, ": no such file");
  if (S_ISDIR(st.st_mode)) VIDKV_THROW(IoError, path, ": is a directory, not a trace file");
  if (!S_ISREG(st.st_mode))
    VIDKV_THROW(IoError, path, ": is a ", S_ISFIFO(st.st_mode) ? "FIFO (named pipe)" : S_ISSOCK(st.st_mode) ? "socket" : "device",
                ", not a regular file; refused (reading it could block forever or never end). Copy the trace to a file");
  // The first 64 KiB hold the superblock, the root group's object header and its attributes in every trace
  // written by h5py or TraceWriter.
  std::ifstream in(path, std::ios::binary);
  std::string head(65536, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(in.gcount()));
  const std::uint64_t h = fnv1a(fnv1a(kFnvBasis, head.data(), head.size()), &shapes_hash, sizeof shapes_hash);
  char buf[128];
  std::snprintf(buf, sizeof buf, "size=%lld,mtime=%lld.%09ld,hash=%016llx", static_cast<long long>(st.st_size),
                static_cast<long long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec, static_cast<unsigned long long>(h));
  return buf;
}

TraceValidationReport validate_trace(const std::string& path, LayerParts parts) {
  TraceValidationReport report;
  const std::string before = trace_identity(path, 0);
  decode(trace_isolation::run_isolated(path, "validating it", [&] { return encode(validate_in_process(path, parts)); }), report);
  if (trace_identity(path, 0) != before)
    VIDKV_THROW(IoError, path, ": the file changed while it was validated; run again once it is complete");
  trace_isolation::mark_checked(path, 2);
  report.info = TraceReader(path).info();  // its structure was checked by the child above
  report.identity = trace_identity(path, report.shapes_hash);
  return report;
}

}  // namespace vidkv
