// The summary table's key (column_key.h).
#include "vidkv/experiments/src/column_key.h"

#include "vidkv/core/name_list.h"
#include "vidkv/experiments/src/column_list.h"

namespace vidkv {

namespace {

struct KeyEntry {
  std::vector<std::string> columns;
  const char* meaning;
  // Per column (parallel to `columns`), what that column adds to the shared meaning; empty when the meaning says
  // it all. Only the shown columns' parts are printed.
  std::vector<const char*> parts = {};
  // The meaning in live mode's table (vidkv live), where it differs; nullptr: the same.
  const char* live_meaning = nullptr;
};

// One entry per group of columns: the meaning and direction; experiments/README.md ("Metrics") defines each exactly.
const std::vector<KeyEntry>& key_entries() {
  static const std::vector<KeyEntry> entries = {
      {{"decode_attn_out_depth_error"},
       "the headline, lower is better: decode_attn_out_rel_error with layer l of L weighted by (L - l)^2, the trace "
       "metric that ranks settings most like the live model (docs/metric-validation.md)"},
      {{"key_rel_error", "value_rel_error"}, "lower is better: |x - x^|_F / |x|_F of the reconstructed K / V"},
      {{"key_mse", "value_mse"}, "lower is better: mean (x - x^)^2"},
      {{"key_snr_db", "value_snr_db"}, "higher is better: 10 log10(sum x^2 / sum (x - x^)^2), 999 for an exact reconstruction"},
      {{"key_cosine", "value_cosine"}, "higher is better, 1 exact: cosine of x and x^"},
      {{"attn_logit_rel_error"}, "lower is better: relative error of the recorded queries' logits q.k / sqrt(d)"},
      {{"attn_kl"}, "lower is better: mean KL(p || p^) of the recorded queries' attention probabilities"},
      {{"attn_topk_overlap"}, "higher is better, 1 exact: share of the top-k attended keys (k = min(32, keys)) kept"},
      {{"attn_out_rel_error", "attn_out_rel_error_key_only", "attn_out_rel_error_value_only"},
       "lower is better: relative error of the recorded queries' attention output",
       {"with K^ and V^", "key_only: with K^ and V", "value_only: with K and V^"}},
      {{"decode_attn_out_rel_error", "decode_attn_out_rel_value", "decode_attn_out_mse", "decode_attn_kl"},
       "lower is better: the generated tokens' queries against the cache as it stood at their decode step",
       {"output error relative to |o|", "rel_value: relative to the attention-weighted value energy sum_j p_j |v_j|^2",
        "mse: absolute", "kl: KL of the probabilities"}},
      {{"perplexity", "perplexity_reference"},
       "lower is better: the live model's perplexity with the quantized / the exact cache (the model's own K/V dtype)"},
      {{"next_token_kl"}, "lower is better: KL of the live model's next-token distribution against the exact cache's"},
      {{"greedy_agreement"}, "higher is better, 1 exact: share of greedy tokens equal to the exact cache's"},
      {{"key_nominal_bits", "value_nominal_bits", "nominal_bits"},
       "bits per element, the paper's convention: code bits, metadata not counted; the lifecycle's full-precision "
       "residual tokens count at their 16 bits, so a short trace shows more than the preset's name"},
      {{"key_effective_bits", "value_effective_bits", "effective_bits"},
       "bits per element from the bytes stored: 8 x bytes / elements, codes, scales, zero points, masks and the "
       "full-precision residual counted (docs/bits.md: each preset's bits without a residual)"},
      {{"compression_ratio"}, "the trace dtype's bits / effective_bits", {}, "the model's K/V dtype's bits / effective_bits"},
      {{"seconds"}, "wall time of replay and metrics, summed over layers", {}, "the run's wall time over every prompt"},
      {{"lifecycle"}, "which tokens are quantized when (docs/algorithms.md section 5): paper / release / kivi, G = the "
                      "prefill quantizes a multiple of G tokens, R = the full-precision residual that triggers the next "
                      "quantization"},
  };
  return entries;
}

}  // namespace

std::string summary_column_key(const std::vector<std::string>& columns, KeyFor table) {
  std::string out;
  for (const KeyEntry& e : key_entries()) {
    std::vector<std::string> shown, shown_parts;
    for (std::size_t i = 0; i < e.columns.size(); ++i)
      if (has_column(columns, e.columns[i])) {
        shown.push_back(e.columns[i]);
        if (i < e.parts.size()) shown_parts.emplace_back(e.parts[i]);
      }
    const std::string names = join_names(shown);
    const std::string parts = join_names(shown_parts, "; ");
    const char* meaning = table == KeyFor::run || !e.live_meaning ? e.meaning : e.live_meaning;
    if (!names.empty()) out += "  " + names + ": " + meaning + (parts.empty() ? "" : ": " + parts) + "\n";
  }
  if (out.empty()) return out;
  const char* pooling = table == KeyFor::run
                            ? "per trace: errors are means over layers, the headline a weighted one; bits count every "
                              "layer's bytes; seconds are summed"
                            : "per run, over every prompt: the reference tokens' perplexity and KL, the greedy tokens' "
                              "agreement; bits count the bytes of every prompt's cache; seconds are the run's wall time";
  return std::string("key (") + pooling + "; compare settings at similar effective bits; experiments/README.md, "
         "\"Metrics\", defines each column):\n" + out;
}

bool column_has_key(const std::string& column) {
  for (const KeyEntry& e : key_entries())
    if (has_column(e.columns, column)) return true;
  return false;
}

}  // namespace vidkv
