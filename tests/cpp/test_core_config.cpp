#include <string>

#include "catch.h"
#include "vidkv/core/config_node.h"
#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"
#include "vidkv/core/params.h"

using namespace vidkv;

namespace {

enum class Axis { channel, token };

struct ToyParams {
  int bits = 2;
  double gamma = 0.7;
  bool fft = true;
  Axis axis = Axis::channel;
  ConfigNode child;

  template <class B>
  static void bind(B& b) {
    b.integer("bits", &ToyParams::bits, 1, 8, "bits", "code bits");
    b.real("gamma", &ToyParams::gamma, 0.0, 2.0, "", "dead zone");
    b.boolean("fft", &ToyParams::fft, "FFT first");
    b.choice("axis", &ToyParams::axis, std::vector<std::pair<std::string, Axis>>{{"channel", Axis::channel}, {"token", Axis::token}}, "grouping");
    b.block("child", &ToyParams::child, "quantizer", "nested");
  }
};

ConfigNode block(std::initializer_list<std::pair<const char*, const char*>> kv) {
  ConfigNode n = ConfigNode::map({"exp.yaml", 3, 5});
  n.set_path("codec.key");
  int line = 4;
  for (const auto& [k, v] : kv) n.set(k, ConfigNode::scalar(v, {"exp.yaml", line++, 7}));
  return n;
}

}  // namespace

TEST_CASE("parameters parse with defaults and typed values", "[core][params]") {
  auto p = parse_params<ToyParams>(block({{"type", "toy"}, {"bits", "4"}, {"axis", "token"}, {"fft", "off"}}), {"type"}, "toy");
  CHECK(p.bits == 4);
  CHECK(p.gamma == 0.7);
  CHECK(!p.fft);
  CHECK(p.axis == Axis::token);
}

TEST_CASE("unknown keys name the file, line, path and suggest the closest key", "[core][params]") {
  try {
    parse_params<ToyParams>(block({{"bits", "2"}, {"gamme", "0.5"}}), {"type"}, "toy");
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    CHECK(m.rfind("exp.yaml:5:7: codec.key.gamme: unknown key 'gamme' for toy (did you mean 'gamma'?)", 0) == 0);
    CHECK(m.find("valid keys: bits, gamma, fft, axis, child") != std::string::npos);
  }
}

TEST_CASE("out-of-range, wrong-type and bad-choice values are ConfigErrors with location", "[core][params]") {
  CHECK_THROWS_WITH(parse_params<ToyParams>(block({{"bits", "9"}}), {}, "toy"),
                    "exp.yaml:4:7: codec.key.bits: bits = 9 is out of range [1, 8] for toy");
  CHECK_THROWS_WITH(parse_params<ToyParams>(block({{"bits", "two"}}), {}, "toy"),
                    "exp.yaml:4:7: codec.key.bits: expected an integer, got 'two'");
  CHECK_THROWS_WITH(parse_params<ToyParams>(block({{"axis", "row"}}), {}, "toy"),
                    "exp.yaml:4:7: codec.key.axis: 'row' is not valid for toy (valid: channel, token)");
  CHECK_THROWS_AS(parse_params<ToyParams>(block({{"gamma", "nan"}}), {}, "toy"), ConfigError);
}

TEST_CASE("parameter specs carry type, default, range and description", "[core][params]") {
  auto specs = describe_params<ToyParams>();
  REQUIRE(specs.size() == 5);
  CHECK(specs[0].name == "bits");
  CHECK(specs[0].default_text == "2");
  CHECK(specs[0].max == 8);
  CHECK(specs[1].default_text == "0.7");
  CHECK(specs[3].default_text == "channel");
  CHECK(specs[3].choices.size() == 2);
  CHECK(specs[4].type == ParamType::block);
}

TEST_CASE("config trees merge, address dotted paths and dump", "[core][config]") {
  ConfigNode base = ConfigNode::map();
  base.set_path_value("codec.key.bits", ConfigNode::scalar("2"));
  base.set_path_value("codec.key.group", ConfigNode::scalar("32"));
  ConfigNode over = ConfigNode::map();
  over.set_path_value("codec.key.bits", ConfigNode::scalar("4"));
  base.merge_from(over);
  CHECK(base.find_path("codec.key.bits")->as_int() == 4);
  CHECK(base.find_path("codec.key.group")->as_int() == 32);
  CHECK(base.find_path("codec.key.bits")->path() == "codec.key.bits");
  CHECK(base.dump() == "{codec: {key: {bits: 4, group: 32}}}");
  CHECK(closest_names("quantizr", {"quantizer", "selector", "group"}) == std::vector<std::string>{"quantizer"});
}

TEST_CASE("error messages' name lists join with a separator and hint the closest name", "[core][config]") {
  CHECK(join_names(std::vector<std::string>{}) == "");
  CHECK(join_names(std::vector<std::string>{"a"}) == "a");
  CHECK(join_names(std::vector<std::string>{"a", "b", "c"}) == "a, b, c");
  CHECK(join_names({"a", "b"}, " | ") == "a | b");
  CHECK(did_you_mean("grop", {"group", "bits"}) == " (did you mean 'group'?)");
  CHECK(did_you_mean("zzzzzz", {"group"}) == "");
}
