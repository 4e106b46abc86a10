#include "vidkv/core/token_protector.h"

#include <algorithm>
#include <cmath>

#include "vidkv/core/channel_selector.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/core/quantizer.h"

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
  return keep_top(score(in, shape, ctx, cand), cand, n, ctx);
}

std::vector<std::int32_t> TokenProtector::keep_top(const std::vector<double>& scores, const std::vector<std::int32_t>& cand,
                                                   std::int64_t n, const TokenContext& ctx) const {
  VIDKV_ASSERT(scores.size() == cand.size(), "protector returned ", scores.size(), " scores for ", cand.size(), " candidates");
  for (double s : scores)
    VIDKV_REQUIRE(std::isfinite(s), Error, "token protector ", name_, " produced a non-finite score (layer ", ctx.layer, ")");
  std::vector<std::int32_t> out;
  for (auto i : top_k_indices(scores, n)) out.push_back(cand[static_cast<std::size_t>(i)]);
  return out;  // ascending because cand is ascending and top_k_indices returns ascending indices
}

std::vector<std::int32_t> TokenProtector::protect_view(const TensorView& in, const TokenContext& ctx, const Execution& ex) const {
  const BlockShape shape = checked_shape(in, ex);
  const std::vector<std::int32_t> cand = candidate_tokens(shape.tokens, ctx);
  const std::int64_t n = budget(static_cast<std::int64_t>(cand.size()));
  if (n == 0) return {};
  return keep_top(scores_of(in, shape, ctx, cand, ex), cand, n, ctx);
}

std::vector<double> TokenProtector::scores_view(const TensorView& in, const TokenContext& ctx, const Execution& ex) const {
  const BlockShape shape = checked_shape(in, ex);
  return scores_of(in, shape, ctx, candidate_tokens(shape.tokens, ctx), ex);
}

BlockShape TokenProtector::checked_shape(const TensorView& in, const Execution& ex) const {
  const std::string what = "token protector " + name_;
  const BlockShape shape = block_shape_of(in, what);
  VIDKV_REQUIRE(in.device == ex.device, ShapeError, what, ": the view is on ", device_name(in.device),
                " but the call runs on ", device_name(ex.device));
  VIDKV_REQUIRE(in.data != nullptr || in.numel() == 0, ShapeError, what, ": null data");
  std::string why;
  if (!supports(ex.device, &why)) VIDKV_THROW(NotSupportedError, what, " on ", ex.str(), ": ", why);
  return shape;
}

std::vector<double> TokenProtector::scores_of(const TensorView& in, const BlockShape& shape, const TokenContext& ctx,
                                              const std::vector<std::int32_t>& cand, const Execution& ex) const {
  if (!ex.on_cuda() || !cuda_implemented()) {
    // Scores from the token context only: the block is not read, wherever it lies.
    if (!reads_block()) return score(nullptr, shape, ctx, cand);
    if (in.dtype == DType::f32) return score(static_cast<const float*>(in.data), shape, ctx, cand);
    const std::vector<float> values = to_float(in);
    return score(values.data(), shape, ctx, cand);
  }
  std::vector<double> scores(cand.size());
  if (cand.empty()) return scores;
  DeviceBuffer device_scores(scores.size() * sizeof(double), ex.cuda_stream);
  score_cuda(in, shape, ctx, cand, device_scores.as<double>(), ex.cuda_stream);
  // Synchronises the stream: the top-k is a host decision (see protect_view in the header).
  copy_to_host(scores.data(), device_scores.data(), scores.size() * sizeof(double), ex.cuda_stream);
  return scores;
}

bool TokenProtector::supports(Device device, std::string* why) const {
  if (device == Device::cpu || (!reads_block() && !cuda_implemented())) return true;
#ifndef VIDKV_WITH_CUDA
  if (why) *why = "this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)";
  return false;
#else
  if (cuda_implemented()) return true;
  if (why) *why = "token protector " + name_ + " reads the block and has no CUDA implementation";
  return false;
#endif
}

void TokenProtector::score_cuda(const TensorView&, const BlockShape&, const TokenContext&, const std::vector<std::int32_t>&,
                                double*, void*) const {
  VIDKV_THROW(NotSupportedError, "token protector ", name_, ": no CUDA implementation");
}

}  // namespace vidkv
