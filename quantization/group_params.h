// The parameters that the grouped quantizers (plugins/quantizers/{uniform,sign,ternary}) bind alike, spelled once:
//   group        integer, elements, [1, 2^20]: the group size G along the grouped axis
//   axis         channel | token (group_format::GroupAxis: a group is G consecutive tokens of one channel, or G
//                consecutive channels of one token)
//   scale_dtype  fp16 | fp32: the storage type of the per-group metadata
//   layout       dense | release (group_format::CodeLayout); uniform also fragment
// Each plugin passes its own description of axis, scale_dtype and layout (what they mean for it: `vidkv plugins`
// prints them) and binds them in its own order among its other parameters. B is a parameter binder (core/params.h).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::group_params {

template <class B, class P>
void bind_group(B& b, int P::*field) {
  b.integer("group", field, 1, 1 << 20, "elements", "group size G along the grouped axis");
}

template <class B, class P>
void bind_axis(B& b, group_format::GroupAxis P::*field, const char* description) {
  using group_format::GroupAxis;
  b.choice("axis", field,
           std::vector<std::pair<std::string, GroupAxis>>{{"channel", GroupAxis::channel}, {"token", GroupAxis::token}},
           description);
}

template <class B, class P>
void bind_scale_dtype(B& b, DType P::*field, const char* description) {
  b.choice("scale_dtype", field, std::vector<std::pair<std::string, DType>>{{"fp16", DType::f16}, {"fp32", DType::f32}},
           description);
}

// with_fragment: the plugin also takes layout fragment (group_format.h: uniform's 2-bit codes, sign's 1-bit codes).
template <class B, class P>
void bind_layout(B& b, group_format::CodeLayout P::*field, const char* description, bool with_fragment = false) {
  using group_format::CodeLayout;
  std::vector<std::pair<std::string, CodeLayout>> choices{{"dense", CodeLayout::dense}, {"release", CodeLayout::release}};
  if (with_fragment) choices.emplace_back("fragment", CodeLayout::fragment);
  b.choice("layout", field, choices, description);
}

}  // namespace vidkv::group_params
