// Token protectors choose the tokens that keep more bits (VidKV semantic token protection, algorithms.md 4.1).
//
// kvpress style: a method writes only score(); the base class picks the candidate tokens (by modality), computes
// the budget (fraction or count; paper or release count rule) and keeps the highest-scoring candidates (ties to
// the lower position). One selection per block: every KV head of the layer shares it, as in the release.
//
// Devices (the backend seam): protect_view() takes an fp32, fp16 or bf16 view on the cpu or on a cuda device and
// returns the protected indices on the host. Every built-in protector scores from the token context alone (modality,
// trace position, seed, embeddings, recorded queries and keys: host data) and never reads the block
// (reads_block() == false), so on cuda the block stays on the device untouched. Where a protector has a CUDA
// scoring (score_cuda(): semantic_embedding, whose double sums of products are worth the device for long traces)
// its scores are computed there and copied back; otherwise (none, random, semantic_attention) its host score()
// runs. Either way the selection equals the CPU's: device scores are equal bit for bit to score().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidkv/core/execution.h"
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
  // protect() on a [heads, tokens, channels] or [tokens, channels] view of fp32, fp16 or bf16 values on ex.device;
  // the indices are a host vector, equal to protect() on the values converted to fp32. On cuda, a protector with a
  // CUDA scoring runs score_cuda() and copies the scores back (which synchronises ex.cuda_stream: the top-k is a
  // host decision); one without, that does not read the block, runs score() on the host without touching `in`
  // (no stream work, no synchronisation). Throws ShapeError for a bad rank or a view on another device,
  // NotSupportedError where the device has no implementation.
  std::vector<std::int32_t> protect_view(const TensorView& in, const TokenContext& ctx, const Execution& ex) const;
  // The scores protect_view() ranks, on the host: one per candidate_tokens(tokens, ctx), equal bit for bit to
  // score() on the fp32 values (on cuda with a CUDA scoring this synchronises). Same errors as protect_view().
  std::vector<double> scores_view(const TensorView& in, const TokenContext& ctx, const Execution& ex) const;
  // Whether score() reads the block `in`. False for protectors that score from the token context only.
  virtual bool reads_block() const { return true; }
  // Whether score() reads the recorded query states (ctx.queries). False by default; a protector that does says so,
  // so that a run whose metrics do not need the queries reads them from the trace only for such a codec.
  virtual bool reads_recorded_queries() const { return false; }
  // Whether score() reads ctx.keys (the layer's full-precision keys). False by default; a protector that does says
  // so, and the cache then exposes them (Quantizer::reads_context_keys).
  virtual bool reads_context_keys() const { return false; }
  // Whether protect_view() on cuda scores on the device (score_cuda) rather than with the host score().
  bool scores_on_cuda() const { return cuda_implemented(); }
  // Whether protect_view() runs on `device`; when not, `why` (if given) says why.
  bool supports(Device device, std::string* why = nullptr) const;
  const TokenProtectionParams& protection() const { return protection_; }
  // Name used in messages ("random"), set by the registry.
  const std::string& plugin_name() const { return name_; }

 protected:
  // The CUDA scoring, overridden (with cuda_implemented()) in builds with CUDA. in: device view of `shape`;
  // scores: device memory for candidates.size() doubles, enqueued on `stream`, each equal bit for bit to score().
  // The default throws NotSupportedError.
  virtual bool cuda_implemented() const { return false; }
  virtual void score_cuda(const TensorView& in, const BlockShape& shape, const TokenContext& ctx,
                          const std::vector<std::int32_t>& candidates, double* scores, void* stream) const;
  // The block shape of `in` after checking it against ex (ShapeError, NotSupportedError).
  BlockShape checked_shape(const TensorView& in, const Execution& ex) const;
  // The candidates' scores on the host, from score() or score_cuda() (see protect_view).
  std::vector<double> scores_of(const TensorView& in, const BlockShape& shape, const TokenContext& ctx,
                                const std::vector<std::int32_t>& candidates, const Execution& ex) const;
  // The n candidates with the highest scores (ties to the lower index), ascending; ctx names the layer in errors.
  std::vector<std::int32_t> keep_top(const std::vector<double>& scores, const std::vector<std::int32_t>& candidates,
                                     std::int64_t n, const TokenContext& ctx) const;

  TokenProtectionParams protection_;

 private:
  friend class PluginRegistry;
  std::string name_ = "token protector";
};

}  // namespace vidkv
