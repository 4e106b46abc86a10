// Plugins at run time: a registry that grows, names scoped by family, plugin libraries loaded through the versioned
// entry point (core/plugin_library.h) and the rule that refuses a library an experiment file names
// (experiments/src/plugin_loading.h). The libraries are built by tests/CMakeLists.txt: the quantizer skeleton
// (examples/plugin-skeletons/quantizer) and tests/plugins/abi_mismatch.cpp.
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include "catch.h"
#include "fixture_quantizers.h"
#include "vidkv/core/plugin_abi.h"
#include "vidkv/core/plugin_library.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/plugin_conformance.h"
#include "vidkv/experiments/src/plugin_loading.h"
#include "vidkv/experiments/src/yaml_config.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("plugin names are scoped by family", "[plugins][registry]") {
  PluginRegistry r = builtin_plugin_registry();
  // A quantizer named like the built-in channel selector 'range': both exist, each found in its own family.
  r.add<HalfStepQuantizer>("range", "test fixture under a selector's name");
  REQUIRE(r.find(PluginFamily::quantizer, "range"));
  REQUIRE(r.find(PluginFamily::channel_selector, "range"));
  CHECK(r.find(PluginFamily::quantizer, "range")->summary != r.find(PluginFamily::channel_selector, "range")->summary);
  CHECK(r.make_quantizer(map({{"type", scalar("range")}}))->plugin_name() == "range");
  CHECK(r.make_channel_selector(map({{"type", scalar("range")}}))->plugin_name() == "range");
  // Twice in one family is refused, naming both origins.
  CHECK(message_of([&] { r.add<HalfStepQuantizer>("range", "again"); }) ==
        "quantizer 'range' is registered twice (built-in, then built-in)");
}

TEST_CASE("the old plugin key 'quantizer:' is refused with the new one named", "[plugins][registry]") {
  const PluginRegistry r = builtin_plugin_registry();
  const std::string m = message_of([&] { r.make_quantizer(map({{"quantizer", scalar("uniform")}})); });
  CHECK(m.find("missing 'type' naming the quantizer") != std::string::npos);
  CHECK(m.find("every family now uses 'type:'") != std::string::npos);
}

TEST_CASE("a plugin library adds its plugins to the registry it is given", "[plugins][loading]") {
  PluginRegistry r = builtin_plugin_registry();
  REQUIRE_FALSE(r.find(PluginFamily::quantizer, "skeleton_absmax"));
  const std::string canonical = load_plugin_library(r, VIDKV_SKELETON_PLUGIN);
  const PluginInfo* info = r.find(PluginFamily::quantizer, "skeleton_absmax");
  REQUIRE(info);
  CHECK(info->origin == canonical);
  CHECK(r.find(PluginFamily::quantizer, "uniform")->origin == "built-in");
  CHECK(load_plugin_library(r, VIDKV_SKELETON_PLUGIN) == canonical);  // a second load of the same file: nothing

  // Golden values, bits 4 (7 levels each side): row [1, -2, 4, 0.5], s = fl(4/7) = 0.571428597..., a little above
  // 4/7, so x / s = [1.74999997, -3.49999994, 7, 0.87499998] (float32 division) and the codes are [2, -3, 7, 1]:
  // -2 / s falls just short of the tie -3.5 (in exact arithmetic it would round half to even, to -4); decoded q * s.
  const auto q = r.make_quantizer(map({{"type", scalar("skeleton_absmax")}, {"bits", scalar("4")}}));
  const BlockShape shape{1, 1, 4};
  const std::vector<float> x{1.0f, -2.0f, 4.0f, 0.5f};
  std::vector<std::uint8_t> bytes(q->layout(shape, {}).bytes());
  REQUIRE(bytes.size() == 4 + 4);
  q->encode(x.data(), shape, {}, bytes.data());
  CHECK(std::vector<std::int8_t>(bytes.begin() + 4, bytes.end()) == std::vector<std::int8_t>{2, -3, 7, 1});
  std::vector<float> y(4);
  q->decode(bytes.data(), shape, {}, y.data());
  const float s = 4.0f / 7.0f;
  CHECK(y == std::vector<float>{2 * s, -3 * s, 7 * s, 1 * s});
  // The library's parameters are validated by the same code as the built-ins'.
  CHECK(message_of([&] { r.make_quantizer(map({{"type", scalar("skeleton_absmax")}, {"bits", scalar("9")}})); })
            .find("bits = 9 is out of range [2, 8]") != std::string::npos);
}

TEST_CASE("a library built for another plugin ABI version is refused, naming both versions", "[plugins][loading]") {
  PluginRegistry r = builtin_plugin_registry();
  const std::string m = message_of([&] { load_plugin_library(r, VIDKV_ABI_MISMATCH_PLUGIN); });
  const std::string ours = std::to_string(VIDKV_PLUGIN_ABI_VERSION), theirs = std::to_string(VIDKV_PLUGIN_ABI_VERSION + 1);
  CHECK(m.find("was built for VidKV plugin ABI version " + theirs + ", but this VidKV has plugin ABI version " + ours) !=
        std::string::npos);
  CHECK(m.find(VIDKV_ABI_MISMATCH_PLUGIN) != std::string::npos);
  CHECK(r.list().size() == builtin_plugin_registry().list().size());  // nothing registered
  CHECK(message_of([&] { load_plugin_library(r, "no/such/libx.so"); }) == "plugin library 'no/such/libx.so': no such file");
}

TEST_CASE("an experiment's plugins: are loaded only with --allow-plugins or when already loaded", "[plugins][loading]") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "vidkv-test-plugin-loading";
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "exp.yaml").string();
  std::ofstream(file) << "name: t\ntraces: [traces/data/smollm2-135m-longdoc.h5]\nplugins: [" << VIDKV_SKELETON_PLUGIN
                      << "]\ncodec: {key: {type: skeleton_absmax}, value: {type: skeleton_absmax, bits: 8}}\n";
  const ConfigNode doc = load_yaml_file(file);
  {
    PluginRegistry r = builtin_plugin_registry();
    const std::string m = message_of([&] { load_experiment_plugins(r, doc, file, false); });
    CHECK(m.rfind(file + ":3:", 0) == 0);  // the file and the line of the entry
    CHECK(m.find("refused without --allow-plugins") != std::string::npos);
    CHECK_FALSE(r.find(PluginFamily::quantizer, "skeleton_absmax"));
    // Without the library the codec names an unknown quantizer: planning fails, nothing was loaded.
    CHECK(message_of([&] { plan_experiment_document(doc, {}, r, file); }).find("unknown quantizer 'skeleton_absmax'") != std::string::npos);
  }
  {
    PluginRegistry r = builtin_plugin_registry();
    load_experiment_plugins(r, doc, file, true);
    const ExperimentPlan plan = plan_experiment_document(doc, {}, r, file);
    CHECK(plan.runs.size() == 1);
  }
  {
    PluginRegistry r = builtin_plugin_registry();
    load_user_plugins(r, {VIDKV_SKELETON_PLUGIN});  // the user's --plugin: the experiment may then name it
    load_experiment_plugins(r, doc, file, false);
    CHECK(r.find(PluginFamily::quantizer, "skeleton_absmax"));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("the skeleton quantizer passes the conformance suite", "[plugins][conformance]") {
  PluginRegistry r = builtin_plugin_registry();
  load_plugin_library(r, VIDKV_SKELETON_PLUGIN);
  const auto checks = check_plugins(r, {*r.find(PluginFamily::quantizer, "skeleton_absmax")});
  REQUIRE(checks.size() >= 8);
  for (const auto& c : checks) {
    INFO(c.plugin << " " << c.check << ": " << c.detail);
    CHECK(c.verdict == (c.check == "cuda" ? Verdict::skipped : Verdict::pass));
  }
}

TEST_CASE("VIDKV_PLUGIN_PATH lists plugin files that every command loads", "[plugins][loading]") {
  // Empty entries are skipped; a missing file names the variable.
  ::setenv("VIDKV_PLUGIN_PATH", (std::string("::") + VIDKV_SKELETON_PLUGIN).c_str(), 1);
  PluginRegistry r = builtin_plugin_registry();
  load_user_plugins(r, {});
  CHECK(r.find(PluginFamily::quantizer, "skeleton_absmax"));
  ::setenv("VIDKV_PLUGIN_PATH", "no/such/libx.so", 1);
  PluginRegistry fresh = builtin_plugin_registry();
  CHECK(message_of([&] { load_user_plugins(fresh, {}); }) ==
        "VIDKV_PLUGIN_PATH: plugin library 'no/such/libx.so': no such file");
  ::unsetenv("VIDKV_PLUGIN_PATH");
}
