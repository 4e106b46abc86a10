// Parameters known at run time (core/dynamic_params.h, used by Python-defined plugins): the same rules and messages
// as a C++ plugin's Params struct, one check per kind of bad input.
#include <string>
#include <vector>

#include "catch.h"
#include "vidkv/core/dynamic_params.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/yaml_config.h"

using namespace vidkv;

namespace {

std::vector<ParamSpec> specs() {
  ParamSpec bits{"bits", ParamType::integer, "4", 2, 8, {}, "bits", "code bits", {}};
  ParamSpec gamma{"gamma", ParamType::real, "0.5", 0, 1, {}, "", "dead zone", {}};
  ParamSpec fft{"fft", ParamType::boolean, "false", 0, 1, {}, "", "use the FFT", {}};
  ParamSpec axis{"axis", ParamType::choice, "channel", 0, 0, {"channel", "token"}, "", "grouped axis", {}};
  return {bits, gamma, fft, axis};
}

std::string message_of(const std::string& yaml) {
  try {
    parse_dynamic_params(parse_yaml_text(yaml, "p.yaml"), specs(), {"type"}, "py_q");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("dynamic parameters: values in spec order, defaults filled", "[core][params]") {
  const auto v = parse_dynamic_params(parse_yaml_text("{type: py_q, gamma: 0.25, axis: token}", "p.yaml"), specs(), {"type"}, "py_q");
  REQUIRE(v.size() == 4);
  CHECK(v[0].first == "bits");
  CHECK(v[0].second.integer == 4);  // default
  CHECK(v[1].second.real == 0.25);
  CHECK(v[2].second.boolean == false);
  CHECK(v[3].second.text == "token");
}

TEST_CASE("dynamic parameters: each bad input is a ConfigError naming the line", "[core][params]") {
  CHECK(message_of("{type: py_q, bitz: 2}") ==
        "p.yaml:1:14: bitz: unknown key 'bitz' for py_q (did you mean 'bits'?); valid keys: bits, gamma, fft, axis");
  CHECK(message_of("{type: py_q, bits: 9}") == "p.yaml:1:20: bits: bits = 9 is out of range [2, 8] for py_q");
  CHECK(message_of("{type: py_q, gamma: 1.5}") == "p.yaml:1:21: gamma: gamma = 1.5 is out of range [0, 1] for py_q");
  CHECK(message_of("{type: py_q, axis: row}").find("axis: 'row' is not valid for py_q (valid: channel, token)") != std::string::npos);
  CHECK(message_of("{type: py_q, fft: maybe}").find("fft") != std::string::npos);
  CHECK(message_of("{type: py_q, bits: two}").find("bits") != std::string::npos);
}
