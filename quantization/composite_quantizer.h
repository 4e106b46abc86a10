// What the composite quantizers (plugins/quantizers/{mixed_channel,mixed_token}) do alike with their two children:
// a composite splits a block [heads, tokens, channels] into parts (channels chosen by a selector, tokens chosen by a
// protector), hands each non-empty part to a child quantizer and stores the children's sections back to back after
// its own mask section (the formats: mixed_channel.h, mixed_token.h). The split itself differs (channels of every
// token row vs whole token rows) and stays in each plugin.
//
//   default_block      a child's default YAML block ({type: uniform, bits: 2, ...}) built in code, for Params
//   encode_child       one child's section at `cursor` (host), returning the cursor past it
//   decode_child       the reverse
//   device_part        a device view of one dense part block, for the children's encode_view / decode_view
//   part_supports      a part's (child's, selector's, protector's) supports() answer with its reason prefixed
//   joined_tier        "<composite>(<tier>, <tier>)" of the children that run; exact when all are
//
// The CUDA paths step the cursor themselves (mixed_channel's decode computes each child's section size once for all
// heads: host time per call is what the live cache pays every decode step).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "vidkv/core/config_node.h"
#include "vidkv/core/quantizer.h"

namespace vidkv::composite {

// A YAML map of scalar entries, e.g. default_block({{"type", "ternary"}}).
ConfigNode default_block(std::initializer_list<std::pair<const char*, const char*>> entries);

// child.encode(in, shape, ctx, cursor) for `in` the part's dense fp32 block (host); returns cursor +
// child.layout(shape, ctx).bytes().
std::uint8_t* encode_child(const Quantizer& child, const float* in, const BlockShape& shape, const TokenContext& ctx,
                           std::uint8_t* cursor);
// child.decode(cursor, shape, ctx, out) into `out` (shape.elements() fp32, host); returns the cursor past the section.
const std::uint8_t* decode_child(const Quantizer& child, const std::uint8_t* cursor, const BlockShape& shape,
                                 const TokenContext& ctx, float* out);

// The view of `shape` elements of `dtype` at device address `data` ([heads, tokens, channels], contiguous).
TensorView device_part(void* data, DType dtype, const BlockShape& shape);

// check(&reason) is a part's supports(); true when it is, else false with *why (when given) = "<label>: <reason>".
template <class Check>
bool part_supports(const char* label, std::string* why, Check&& check) {
  std::string reason;
  if (check(&reason)) return true;
  if (why) *why = std::string(label) + ": " + reason;
  return false;
}

// {"<composite>(<t1.name>, <t2.name>, ...)", t1.exact && t2.exact && ...} over the tiers of the children that run
// ("<composite>()" for none).
KernelTier joined_tier(const std::string& composite, const std::vector<KernelTier>& children);

}  // namespace vidkv::composite
