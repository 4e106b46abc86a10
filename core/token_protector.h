// Token protectors choose the tokens that keep more bits (VidKV semantic token protection, algorithms.md 4.1).
//
// kvpress style: a method writes only score(); the base class picks the candidate tokens (by modality), computes
// the budget (fraction or count; paper or release count rule) and keeps the highest-scoring candidates (ties to
// the lower position). One selection per block: every KV head of the layer shares it, as in the release.
#pragma once

#include <cstdint>
#include <vector>

#include "vidkv/core/tensor_view.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

enum class CountRule { paper, release };
enum class CandidateSpan { visual, context, all };

// Budget shared by every token protector; protectors' parameter structs derive from it.
struct TokenProtectionParams {
  double fraction = 0.2;  // p: share of candidate tokens protected
  int count = -1;         // if >= 0, protects exactly min(count, candidates) tokens and ignores fraction/rule
  CountRule count_rule = CountRule::paper;
  CandidateSpan candidates = CandidateSpan::visual;

  template <class P, class B>
  static void bind_protection(B& b) {
    b.real("fraction", &P::fraction, 0.0, 1.0, "fraction", "p: share of candidate tokens protected (paper: 0.2)");
    b.integer("count", &P::count, -1, 1 << 30, "tokens", "exact number of protected tokens; -1 uses fraction and count_rule");
    // The casts: &P::x names the base member; choice<E>() deduces E from `E P::*`, which needs the derived type.
    b.choice("count_rule", static_cast<CountRule P::*>(&P::count_rule), std::vector<std::pair<std::string, CountRule>>{{"paper", CountRule::paper}, {"release", CountRule::release}},
             "paper: n = int(p * N); release: max(32, floor(p * N / 32) * 32) - 32");
    b.choice("candidates", static_cast<CandidateSpan P::*>(&P::candidates),
             std::vector<std::pair<std::string, CandidateSpan>>{{"visual", CandidateSpan::visual}, {"context", CandidateSpan::context}, {"all", CandidateSpan::all}},
             "candidate tokens: visual (modality 1), context (every token before the query text that is not query or generated), all");
  }
};

class TokenProtector {
 public:
  explicit TokenProtector(const TokenProtectionParams& p) : protection_(p) {}
  virtual ~TokenProtector() = default;

  // Score of each candidate (local token indices `candidates`, ascending) of the block `in`
  // ([heads, tokens, channels] fp32, the K or V being quantized). Higher = more worth protecting.
  virtual std::vector<double> score(const float* in, const BlockShape& shape, const TokenContext& ctx,
                                    const std::vector<std::int32_t>& candidates) const = 0;

  // Local indices (ascending) of the candidate tokens of a block of `tokens` tokens under ctx.
  std::vector<std::int32_t> candidate_tokens(std::int64_t tokens, const TokenContext& ctx) const;
  // Tokens protected out of n candidates.
  std::int64_t budget(std::int64_t candidates) const;
  // Exactly budget(candidates) local token indices, ascending: the highest scores, ties to the lower index.
  std::vector<std::int32_t> protect(const float* in, const BlockShape& shape, const TokenContext& ctx) const;
  const TokenProtectionParams& protection() const { return protection_; }

 protected:
  TokenProtectionParams protection_;
};

}  // namespace vidkv
