// Typed, described plugin parameters: one declaration serves parsing, validation and documentation.
//
// A plugin declares a plain struct of parameters with defaults and a `bind` function that names each field:
//
//   struct UniformParams {
//     int bits = 2;
//     template <class B> static void bind(B& b) {
//       b.integer("bits", &UniformParams::bits, 1, 8, "bits", "code bits per element");
//     }
//   };
//
// ParamReader<UniformParams> parses a ConfigNode into the struct (unknown keys, wrong types and out-of-range values
// are ConfigErrors naming file:line:column, the dotted path, and the valid choices); ParamDescriber lists the
// ParamSpecs that `vidkv plugins describe` prints. Plugins never see YAML, HDF5 or Python objects.
#pragma once

#include <algorithm>

#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "vidkv/core/config_node.h"
#include "vidkv/core/name_list.h"

namespace vidkv {

enum class ParamType { integer, real, boolean, choice, block };
std::string param_type_name(ParamType t);

// What `vidkv plugins describe` prints for one parameter.
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::integer;
  std::string default_text;          // as it would be written in YAML; "" for blocks without default
  double min = 0, max = 0;           // inclusive range for integer/real
  std::vector<std::string> choices;  // for choice
  std::string unit;                  // "bits", "tokens", "fraction", ... ("" when unitless)
  std::string description;           // one line
  std::string block_family;          // for block: "quantizer", "channel_selector" or "token_protector"
};

// Formats a double the way YAML users write it (0.7, 32, 1e-06).
std::string format_number(double v);

// Collects the ParamSpecs of a parameter struct.
template <class P>
class ParamDescriber {
 public:
  ParamDescriber() : defaults_() {}
  void integer(const char* name, int P::*field, int lo, int hi, const char* unit, const char* description) {
    specs_.push_back({name, ParamType::integer, std::to_string(defaults_.*field), double(lo), double(hi), {}, unit,
                      description, {}});
  }
  void real(const char* name, double P::*field, double lo, double hi, const char* unit, const char* description) {
    specs_.push_back({name, ParamType::real, format_number(defaults_.*field), lo, hi, {}, unit, description, {}});
  }
  void boolean(const char* name, bool P::*field, const char* description) {
    specs_.push_back({name, ParamType::boolean, defaults_.*field ? "true" : "false", 0, 1, {}, "", description, {}});
  }
  template <class E>
  void choice(const char* name, E P::*field, const std::vector<std::pair<std::string, E>>& options,
              const char* description) {
    ParamSpec s{name, ParamType::choice, "", 0, 0, {}, "", description, {}};
    for (const auto& [text, value] : options) {
      s.choices.push_back(text);
      if (value == defaults_.*field) s.default_text = text;
    }
    specs_.push_back(std::move(s));
  }
  void block(const char* name, ConfigNode P::*field, const char* family, const char* description) {
    specs_.push_back({name, ParamType::block, (defaults_.*field).is_null() ? "" : (defaults_.*field).dump(), 0, 0, {},
                      "", description, family});
  }
  std::vector<ParamSpec> take() { return std::move(specs_); }

 private:
  P defaults_;
  std::vector<ParamSpec> specs_;
};

// Parses a ConfigNode map into P. Keys listed in `reserved` (the plugin-type key) are skipped.
template <class P>
class ParamReader {
 public:
  ParamReader(const ConfigNode& node, std::set<std::string> reserved, std::string plugin)
      : node_(node), reserved_(std::move(reserved)), plugin_(std::move(plugin)) {
    if (!node_.is_map() && !node_.is_null()) node_.fail("expected a mapping of parameters for '" + plugin_ + "'");
  }

  void integer(const char* name, int P::*field, int lo, int hi, const char*, const char*) {
    known_.push_back(name);
    if (const ConfigNode* n = lookup(name)) {
      const std::int64_t v = n->as_int();
      if (v < lo || v > hi)
        n->fail(std::string(name) + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "] for " + plugin_);
      out_.*field = static_cast<int>(v);
    }
  }
  void real(const char* name, double P::*field, double lo, double hi, const char*, const char*) {
    known_.push_back(name);
    if (const ConfigNode* n = lookup(name)) {
      const double v = n->as_double();
      if (v < lo || v > hi)
        n->fail(std::string(name) + " = " + format_number(v) + " is out of range [" + format_number(lo) + ", " +
                format_number(hi) + "] for " + plugin_);
      out_.*field = v;
    }
  }
  void boolean(const char* name, bool P::*field, const char*) {
    known_.push_back(name);
    if (const ConfigNode* n = lookup(name)) out_.*field = n->as_bool();
  }
  template <class E>
  void choice(const char* name, E P::*field, const std::vector<std::pair<std::string, E>>& options, const char*) {
    known_.push_back(name);
    if (const ConfigNode* n = lookup(name)) {
      const std::string& t = n->text();
      for (const auto& [text, value] : options) {
        if (text == t) {
          out_.*field = value;
          return;
        }
      }
      // The choices' names by a plain loop: std::views::keys does not compile with clang 14 over libstdc++ 12
      // (Debian 12's compilers: the sanitizer build, and plugins built with clang).
      std::vector<std::string> valid;
      for (const auto& option : options) valid.push_back(option.first);
      n->fail("'" + t + "' is not valid for " + plugin_ + " (valid: " + join_names(valid) + ")");
    }
  }
  void block(const char* name, ConfigNode P::*field, const char*, const char*) {
    known_.push_back(name);
    if (const ConfigNode* n = lookup(name)) {
      if (!n->is_map()) n->fail(std::string(name) + ": expected a nested plugin block {type-key: NAME, ...}");
      out_.*field = *n;
    }
  }

  // Throws ConfigError for every key that no field claimed, with a "did you mean" suggestion.
  P finish() {
    if (node_.is_map()) {
      for (const auto& [key, value] : node_.entries()) {
        if (reserved_.count(key)) continue;
        bool found = false;
        for (const auto& k : known_) found = found || k == key;
        if (!found) {
          const std::string valid = join_names(known_);
          std::string hint = did_you_mean(key, known_);
          // Other names of our fields: KIVI's and transformers' QuantizedCacheConfig (vidkv.hf from_kivi / from_hf),
          // and our own plugins' two names for the byte layout (`layout` in uniform and sign, `packing` in ternary).
          struct OtherName {
            const char* theirs;
            const char* ours;
            bool sibling;  // another of our plugins' name, not KIVI's / transformers'
          };
          static const OtherName kOtherNames[] = {
              {"k_bits", "bits", false}, {"v_bits", "bits", false}, {"nbits", "bits", false}, {"group_size", "group", false},
              {"q_group_size", "group", false}, {"residual_length", "residual", false}, {"axis_key", "axis", false},
              {"axis_value", "axis", false}, {"layout", "packing", true}, {"packing", "layout", true}};
          for (const OtherName& n : kOtherNames)
            if (key == n.theirs && std::find(known_.begin(), known_.end(), n.ours) != known_.end())
              hint = " (did you mean '" + std::string(n.ours) + "'? " +
                     (n.sibling ? plugin_ + " calls its byte layout '" + n.ours + "'" : "'" + key + "' is the KIVI / transformers name") + ")";
          value.fail_at_key("unknown key '" + key + "' for " + plugin_ + hint + "; valid keys: " + (valid.empty() ? "none" : valid));
        }
      }
    }
    return out_;
  }

 private:
  const ConfigNode* lookup(const char* name) const { return node_.is_map() ? node_.find(name) : nullptr; }

  const ConfigNode& node_;
  std::set<std::string> reserved_;
  std::string plugin_;
  std::vector<std::string> known_;
  P out_{};
};

template <class P>
std::vector<ParamSpec> describe_params() {
  ParamDescriber<P> d;
  P::bind(d);
  return d.take();
}

// Parses `node` into P, then calls `P::validate(node)` if P has one (cross-parameter checks).
template <class P>
P parse_params(const ConfigNode& node, const std::set<std::string>& reserved, const std::string& plugin) {
  ParamReader<P> r(node, reserved, plugin);
  P::bind(r);
  P p = r.finish();
  if constexpr (requires(P& q, const ConfigNode& n) { q.validate(n); }) p.validate(node);
  return p;
}

}  // namespace vidkv
