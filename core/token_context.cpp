#include "vidkv/core/token_context.h"

#include "vidkv/core/error.h"

namespace vidkv {

const char* modality_name(Modality m) {
  switch (m) {
    case Modality::system_text: return "context text";  // template, system message, document text
    case Modality::visual: return "visual";
    case Modality::query_text: return "query";
    case Modality::generated: return "generated";
  }
  return "?";
}

TraceTokens TraceTokens::uniform(std::int64_t tokens, Modality m) {
  TraceTokens t;
  const auto n = static_cast<std::size_t>(tokens);
  t.modality.assign(n, m);
  t.position.resize(n);
  for (std::size_t i = 0; i < n; ++i) t.position[i] = static_cast<std::int32_t>(i);
  t.frame.assign(n, -1);
  t.patch_row.assign(n, -1);
  t.patch_col.assign(n, -1);
  return t;
}

Modality TokenContext::modality(std::int64_t i) const {
  if (!tokens) return Modality::system_text;
  const auto t = static_cast<std::size_t>(trace_index(i));
  VIDKV_ASSERT(t < tokens->modality.size(), "token ", t, " outside the trace's ", tokens->modality.size(), " tokens");
  return tokens->modality[t];
}

std::int32_t TokenContext::position(std::int64_t i) const {
  if (!tokens) return trace_index(i);
  return tokens->position[static_cast<std::size_t>(trace_index(i))];
}

TokenContext TokenContext::subset(const std::vector<std::int32_t>& local) const {
  TokenContext out = *this;
  out.index.resize(local.size());
  for (std::size_t i = 0; i < local.size(); ++i) out.index[i] = trace_index(local[i]);
  out.offset = 0;
  return out;
}

TokenContext TokenContext::range(std::int64_t begin, std::int64_t end) const {
  if (index.empty()) {  // contiguous trace tokens stay contiguous: an offset, no vector (the live cache's every step)
    TokenContext out = *this;
    out.offset = offset + static_cast<std::int32_t>(begin);
    return out;
  }
  std::vector<std::int32_t> local;
  local.reserve(static_cast<std::size_t>(end - begin));
  for (std::int64_t i = begin; i < end; ++i) local.push_back(static_cast<std::int32_t>(i));
  return subset(local);
}

}  // namespace vidkv
