// The plugin conformance suite: the contract every quantizer, channel selector and token protector must meet, as a
// list of named checks with a verdict each. Used by `vidkv plugins check` (on the plugins of one library) and by
// tests/cpp/test_plugin_conformance.cpp (on every plugin of the built-in registry), so a new plugin needs no tests
// of its own for these properties.
//
// Quantizer checks, for one config block, on fp32 blocks [heads, tokens, channels] with tail groups, odd channel
// counts and several heads (kConformanceShapes), on Gaussian data with outlier channels (x8) and a constant channel:
//   layout          layout() is a pure function of shape and context, its sections sum to bytes(), elements() ==
//                   shape.elements(), nominal_bits() > 0; a shape supports() refuses throws a vidkv::Error
//   exact_bytes     encode() writes inside [out, out + layout().bytes()) only: 64 guard bytes each side untouched
//   determinism     encode() twice, into buffers pre-filled with 0xA5 and 0x5A, gives the same bytes
//   token_separable where token_separable(shape) is true (only then), each token encoded alone and its sections'
//                   bytes put side by side per head give the block's bytes (what the kivi lifecycle's merge assumes)
//   decode          decode() writes exactly elements() finite floats (16 guard floats each side untouched)
//   round_trip      ||decode(encode(x)) - x|| / ||x|| < 10 on every shape (not a quality bar: a decoder reading
//                   the wrong offsets, scales or dtype lands far above); the worst value is reported
//   parameters      a block with an unknown key is a ConfigError naming the key
//   reference       the registry's reference and optimized implementations write the same bytes and decode to the
//                   same floats (bit-identical; a plugin that ignores CpuImplementation passes trivially)
//   shapes          supports() takes at least one of the shapes (else the checks above ran on none: a failure); the
//                   detail counts them and names those refused
//   cuda            skipped, with the reason: the CPU-vs-CUDA comparison of CUDA plugins runs in the [cuda] tests
//                   (tests/cpp/test_cuda_registry.cpp); this suite reports whether the plugin declares a CUDA path
//                   and whether a GPU is visible
// Channel selector checks ({type: NAME}): select() returns mask_count(shape) masks of `channels` 0/1 entries with
// exactly selected_count(channels) ones (masks), deterministic (determinism), equal under the reference and
// optimized registries (reference); score() gives `channels` finite values (scores); unknown key (parameters).
// Token protector checks ({type: NAME}, a context with visual and text tokens, input embeddings, recorded
// queries and keys): protect() returns budget(candidates) ascending indices, all among candidate_tokens()
// (indices), deterministic for one context (determinism), equal under both registries (reference); unknown key
// (parameters). A plugin that cannot build from {type: NAME} alone fails `build` and its other checks are skipped.
#pragma once

#include <string>
#include <vector>

#include "vidkv/core/config_node.h"
#include "vidkv/core/packed_layout.h"
#include "vidkv/core/plugin_registry.h"

namespace vidkv {

enum class Verdict { pass, fail, skipped };
const char* verdict_name(Verdict v);

struct ConformanceCheck {
  std::string plugin;  // "quantizer uniform {type: uniform, bits: 3}"
  std::string check;   // "exact_bytes"
  Verdict verdict = Verdict::pass;
  std::string detail;  // why it failed or was skipped; the first failing shape and seed
};

// Block shapes of the quantizer checks.
const std::vector<BlockShape>& conformance_shapes();

// The checks of one quantizer block, built from `registry` (and registry.with_implementation(reference)).
std::vector<ConformanceCheck> check_quantizer(const PluginRegistry& registry, const ConfigNode& block);
std::vector<ConformanceCheck> check_channel_selector(const PluginRegistry& registry, const ConfigNode& block);
std::vector<ConformanceCheck> check_token_protector(const PluginRegistry& registry, const ConfigNode& block);

// Every plugin of `plugins` (from registry.list()) with its default parameters: {type: NAME}.
std::vector<ConformanceCheck> check_plugins(const PluginRegistry& registry, const std::vector<PluginInfo>& plugins);

// The block {type: name} with `params` as scalars (what the checks build).
ConfigNode plugin_block(const std::string& name, const std::vector<std::pair<std::string, std::string>>& params = {});

}  // namespace vidkv
