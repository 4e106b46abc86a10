// Channel selectors pick the "anomalous" channels that get more bits (VidKV keys, algorithms.md 3.1).
//
// kvpress style: a method writes only score(); the base class turns scores into masks (top-k, ties to the lower
// channel index), handles the budget (fraction or count) and the scope (one split per layer shared by all heads,
// as in the release, or one split per head).
//
// Devices (the backend seam): select_view() takes an fp32, fp16 or bf16 view on the cpu or on a cuda device. On cuda
// a selector's score_cuda() computes the scores of every scope on the device, from the block where it lies (never
// copied to the host); select_view() brings only the scores (mask_count x channels doubles) back and runs the top-k
// on the host, while scores_device() leaves them on the device for a composite to rank there (mixed_channel).
// Device scores equal score() on the same (fp32-converted) values bit for bit, so the masks are identical.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidkv/core/config_node.h"
#include "vidkv/core/execution.h"
#include "vidkv/core/tensor_view.h"

namespace vidkv {

enum class SelectionScope { layer, head };

// Budget and scope shared by every channel selector; selectors' parameter structs derive from it.
struct ChannelSelectionParams {
  double fraction = 0.5;  // share of channels selected; key_bits - 1 in VidKV terms (1.5-bit keys -> 0.5)
  int count = -1;         // if >= 0, selects exactly this many channels and `fraction` is ignored
  SelectionScope scope = SelectionScope::layer;

  template <class P, class B>
  static void bind_selection(B& b) {
    b.real("fraction", &P::fraction, 0.0, 1.0, "fraction",
           "share of channels selected, k = int(D * fraction); 0 selected while fraction > 0 becomes 32 (release rule)");
    b.integer("count", &P::count, -1, 1 << 20, "channels", "exact number of channels selected; -1 uses fraction");
    // The cast: &P::scope names the base member; choice<E>() deduces E from `E P::*`, which needs the derived type.
    b.choice("scope", static_cast<SelectionScope P::*>(&P::scope), std::vector<std::pair<std::string, SelectionScope>>{{"layer", SelectionScope::layer}, {"head", SelectionScope::head}},
             "layer: one split from all KV heads of the layer (release); head: one split per head");
  }
};

class ChannelSelector {
 public:
  explicit ChannelSelector(const ChannelSelectionParams& p) : selection_(p) {}
  virtual ~ChannelSelector() = default;

  // Score of each of shape.channels channels from heads [head_begin, head_end) of the block `in`
  // ([heads, tokens, channels] fp32). Higher = more anomalous = more bits.
  virtual std::vector<double> score(const float* in, const BlockShape& shape, std::int64_t head_begin,
                                    std::int64_t head_end) const = 0;

  // Number of channels selected out of `channels` (throws ConfigError if more than there are).
  std::int64_t selected_count(std::int64_t channels) const;
  // Whether selected_count(channels) is defined (the count is at most `channels`); `why` gets the reason when not.
  // For supports(): a quantizer refuses such a block instead of throwing from its shape checks.
  bool count_fits(std::int64_t channels, std::string* why = nullptr) const;
  // Masks: 1 for layer scope, shape.heads for head scope; each `channels` entries of 0/1 with exactly
  // selected_count(channels) ones.
  std::vector<std::vector<std::uint8_t>> select(const float* in, const BlockShape& shape) const;
  // select() on a [heads, tokens, channels] or [tokens, channels] view of fp32, fp16 or bf16 values on ex.device;
  // the masks are host vectors, equal to select() on the values converted to fp32 (exact). On cuda: score_cuda()
  // on ex.cuda_stream, then the scores are copied to the host, which SYNCHRONISES the stream (the selection is a
  // host decision: the top-k of mask_count x channels scores, and the caller needs the masks on the host to size
  // and launch the next kernels). Throws ShapeError for a bad rank or a view on another device, NotSupportedError
  // where the device has no implementation.
  std::vector<std::vector<std::uint8_t>> select_view(const TensorView& in, const Execution& ex) const;
  // The scores select_view() ranks, on the host: mask_count(shape) rows of shape.channels doubles (scope s at
  // s * channels), equal bit for bit to score() of each scope on the fp32 values. On cuda this synchronises.
  std::vector<double> scores_view(const TensorView& in, const Execution& ex) const;
  // The scores of scores_view() on the device, left there: `scores` is device memory for mask_count(shape) *
  // shape.channels doubles; enqueued on ex.cuda_stream, no synchronisation (a composite then ranks them on the
  // device, mixed_channel_cuda::mask_from_scores). `in` is a device view; same errors as select_view().
  void scores_device(const TensorView& in, double* scores, const Execution& ex) const;
  // Whether select_view() runs on `device`; when not, `why` (if given) says why.
  bool supports(Device device, std::string* why = nullptr) const;
  // Number of masks select() returns for `shape`.
  std::int64_t mask_count(const BlockShape& shape) const { return selection_.scope == SelectionScope::layer ? 1 : shape.heads; }
  const ChannelSelectionParams& selection() const { return selection_; }
  // Name used in messages ("range"), set by the registry.
  const std::string& plugin_name() const { return name_; }

 protected:
  // The CUDA scoring, overridden (with cuda_implemented()) by selectors that have one, in builds with CUDA.
  // in: device view (fp32, fp16 or bf16) of `shape`; scores: device memory for mask_count(shape) * shape.channels
  // doubles, scope s at [s * channels, (s + 1) * channels) (scope layer: all heads; head: head s). Enqueued on
  // `stream`; each score equal bit for bit to score() of that scope. The default throws NotSupportedError.
  virtual bool cuda_implemented() const { return false; }
  virtual void score_cuda(const TensorView& in, const BlockShape& shape, double* scores, void* stream) const;
  // The masks of select() from the scores of every scope (scope s at s * shape.channels).
  std::vector<std::vector<std::uint8_t>> masks_from_scores(const std::vector<double>& scores, const BlockShape& shape) const;
  // Heads per scope: shape.heads for scope layer, 1 for scope head.
  std::int64_t heads_per_scope(const BlockShape& shape) const {
    return selection_.scope == SelectionScope::layer ? shape.heads : 1;
  }

  ChannelSelectionParams selection_;

 private:
  friend class PluginRegistry;
  std::string name_ = "channel selector";
};

// Indices of the `k` largest scores, ties broken by the lower index, returned in ascending index order.
std::vector<std::int64_t> top_k_indices(const std::vector<double>& scores, std::int64_t k);

}  // namespace vidkv
