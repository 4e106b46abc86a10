// The lists and hints of error messages: "valid: a, b, c" and " (did you mean 'x'?)", written once for core,
// traces and experiments alike. No units; no errors (nothing here throws but std::bad_alloc).
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace vidkv {

// Up to `max_count` names from `candidates` closest to `word` (edit distance <= 1/3 of its length, at least 2).
std::vector<std::string> closest_names(const std::string& word, const std::vector<std::string>& candidates,
                                       std::size_t max_count = 1);

// The names of any range of strings joined by `separator`: "a, b, c" ("" for none).
template <class Names = std::initializer_list<std::string_view>>
std::string join_names(const Names& names, std::string_view separator = ", ") {
  std::string out;
  for (const auto& name : names) {
    if (!out.empty()) out += separator;
    out += name;
  }
  return out;
}

// " (did you mean 'x'?)" for the candidate closest to `word` (closest_names), "" when none is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace vidkv
