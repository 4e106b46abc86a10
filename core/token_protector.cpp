#include "vidkv/core/token_protector.h"

#include <algorithm>
#include <cmath>

#include "vidkv/core/channel_selector.h"
#include "vidkv/core/error.h"

namespace vidkv {

std::vector<std::int32_t> TokenProtector::candidate_tokens(std::int64_t tokens, const TokenContext& ctx) const {
  std::vector<std::int32_t> out;
  for (std::int64_t i = 0; i < tokens; ++i) {
    const Modality m = ctx.modality(i);
    bool take = false;
    switch (protection_.candidates) {
      case CandidateSpan::visual: take = m == Modality::visual; break;
      case CandidateSpan::context: take = m == Modality::system_text || m == Modality::visual; break;
      case CandidateSpan::all: take = true; break;
    }
    if (take) out.push_back(static_cast<std::int32_t>(i));
  }
  return out;
}

std::int64_t TokenProtector::budget(std::int64_t candidates) const {
  std::int64_t n;
  if (protection_.count >= 0) {
    n = protection_.count;
  } else if (protection_.count_rule == CountRule::paper) {
    // n = p * N, rounded down; 1e-9 absorbs 0.2 * 160 = 31.999... in binary floating point.
    n = static_cast<std::int64_t>(std::floor(protection_.fraction * static_cast<double>(candidates) + 1e-9));
  } else {
    // release: floor(p * N / 32) * 32, at least 32, minus 32.
    const auto blocks = static_cast<std::int64_t>(std::floor(protection_.fraction * static_cast<double>(candidates) / 32.0 + 1e-9));
    n = std::max<std::int64_t>(32, blocks * 32) - 32;
  }
  return std::clamp<std::int64_t>(n, 0, candidates);
}

std::vector<std::int32_t> TokenProtector::protect(const float* in, const BlockShape& shape, const TokenContext& ctx) const {
  const std::vector<std::int32_t> cand = candidate_tokens(shape.tokens, ctx);
  const std::int64_t n = budget(static_cast<std::int64_t>(cand.size()));
  if (n == 0) return {};
  std::vector<double> scores = score(in, shape, ctx, cand);
  VIDKV_ASSERT(scores.size() == cand.size(), "protector returned ", scores.size(), " scores for ", cand.size(), " candidates");
  for (double s : scores)
    VIDKV_REQUIRE(std::isfinite(s), Error, "token protector produced a non-finite score (layer ", ctx.layer, ")");
  std::vector<std::int32_t> out;
  for (auto i : top_k_indices(scores, n)) out.push_back(cand[static_cast<std::size_t>(i)]);
  return out;  // ascending because cand is ascending and top_k_indices returns ascending indices
}

}  // namespace vidkv
