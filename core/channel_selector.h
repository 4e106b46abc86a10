// Channel selectors pick the "anomalous" channels that get more bits (VidKV keys, algorithms.md 3.1).
//
// kvpress style: a method writes only score(); the base class turns scores into masks (top-k, ties to the lower
// channel index), handles the budget (fraction or count) and the scope (one split per layer shared by all heads,
// as in the release, or one split per head).
#pragma once

#include <cstdint>
#include <vector>

#include "vidkv/core/config_node.h"
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
  // Masks: 1 for layer scope, shape.heads for head scope; each `channels` entries of 0/1 with exactly
  // selected_count(channels) ones.
  std::vector<std::vector<std::uint8_t>> select(const float* in, const BlockShape& shape) const;
  // Number of masks select() returns for `shape`.
  std::int64_t mask_count(const BlockShape& shape) const { return selection_.scope == SelectionScope::layer ? 1 : shape.heads; }
  const ChannelSelectionParams& selection() const { return selection_; }

 protected:
  ChannelSelectionParams selection_;
};

// Indices of the `k` largest scores, ties broken by the lower index, returned in ascending index order.
std::vector<std::int64_t> top_k_indices(const std::vector<double>& scores, std::int64_t k);

}  // namespace vidkv
