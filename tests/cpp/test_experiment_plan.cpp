#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <unistd.h>

#include "catch.h"
#include "test_registry.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "fixture_quantizers.h"
#include "vidkv/experiments/src/cuda_replay.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/experiments/src/experiment_runner.h"
#include "vidkv/experiments/src/yaml_config.h"

using namespace vidkv;
namespace fs = std::filesystem;

namespace {

// A scratch folder with a trace placeholder file (plans only check that trace patterns match files).
struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() / ("vidkv-plan-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::create_directories(dir);
    std::ofstream(dir / "a.h5") << "x";
    std::ofstream(dir / "b.h5") << "x";
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kBase = R"(name: t
traces: ["*.h5"]
codec:
  key: {type: uniform, bits: 2, group: 32, axis: channel}
  value: {type: uniform, bits: 2, group: 32, axis: token}
)";

}  // namespace

TEST_CASE("YAML values keep file, line and column", "[experiments][yaml]") {
  ConfigNode doc = parse_yaml_text("a:\n  b: 3\n  c: [x, y]\n", "f.yaml");
  const ConfigNode* b = doc.find_path("a.b");
  REQUIRE(b);
  CHECK(b->location().str() == "f.yaml:2:6");
  CHECK(b->path() == "a.b");
  CHECK(doc.find_path("a.c")->items()[1].location().str() == "f.yaml:3:10");
  CHECK_THROWS_WITH(parse_yaml_text("a: [1, 2\n", "bad.yaml"), Catch::Matchers::StartsWith("bad.yaml:2:1: YAML syntax error"));
  CHECK_THROWS_WITH(parse_yaml_text("a: 1\na: 2\n", "dup.yaml"), "dup.yaml:2:1: duplicate key 'a'");
}

TEST_CASE("a missing experiment file says why it cannot be opened", "[experiments][yaml][errors]") {
  const std::string m = message_of([] { load_yaml_file("/nonexistent-vidkv-dir/e.yaml"); });
  CHECK(m == "/nonexistent-vidkv-dir/e.yaml: cannot open experiment file: No such file or directory");
}

TEST_CASE("a typo in a plugin block fails with the line number and the suggestion", "[experiments][plan]") {
  Scratch s;
  const std::string file = s.write("typo.yaml", R"(name: t
traces: ["*.h5"]
codec:
  key:
    typ: uniform
    bits: 2
  value: {type: uniform}
)");
  const std::string m = message_of([&] { plan_experiment(file, {}, test::builtin_registry()); });
  CHECK(m == file + ":5:5: codec.key.typ: unknown key 'typ' (did you mean 'type'?); a quantizer block "
             "names its plugin with 'type: NAME'");
}

TEST_CASE("unknown top-level keys, parameters, metrics and plugins are located and explained", "[experiments][plan]") {
  Scratch s;
  std::string m = message_of([&] { plan_experiment(s.write("x.yaml", std::string(kBase) + "metrcs: [all]\n"), {}, test::builtin_registry()); });
  CHECK(m.find(":6:1: metrcs: unknown key 'metrcs' in the experiment (did you mean 'metrics'?)") != std::string::npos);
  // A key whose value is a block: the key's line (its value starts on the next one).
  m = message_of([&] { plan_experiment(s.write("b.yaml", std::string(kBase) + "sweeps:\n  codec.key.bits: [2]\n"), {}, test::builtin_registry()); });
  CHECK(m.find(":6:1: sweeps: unknown key 'sweeps' in the experiment (did you mean 'sweep'?)") != std::string::npos);
  m = message_of([&] { plan_experiment(s.write("y.yaml", std::string(kBase) + "metrics: [attn_kll]\n"), {}, test::builtin_registry()); });
  CHECK(m.find("unknown metric 'attn_kll' (did you mean 'attn_kl'?)") != std::string::npos);
  m = message_of([&] { plan_experiment(s.write("z.yaml", kBase), {"codec.key.bits=9"}, test::builtin_registry()); });
  CHECK(m.find("--set codec.key.bits") != std::string::npos);
  CHECK(m.find("bits = 9 is out of range [1, 8]") != std::string::npos);
  m = message_of([&] { plan_experiment(s.write("w.yaml", kBase), {"codec.key.type=unifrom"}, test::builtin_registry()); });
  CHECK(m.find("unknown quantizer 'unifrom' (did you mean 'uniform'?)") != std::string::npos);
  m = message_of([&] { plan_experiment(s.write("v.yaml", "name: t\ntraces: [nothing-*.h5]\ncodec: {key: {type: identity}, value: {type: identity}}\n"), {}, test::builtin_registry()); });
  CHECK(m.find(":2:10: traces[0]: no trace matches 'nothing-*.h5'") != std::string::npos);
}

TEST_CASE("cartesian sweeps expand in order and name their runs", "[experiments][plan]") {
  Scratch s;
  const std::string file = s.write("sweep.yaml", std::string(kBase) + "sweep:\n  codec.key.bits: [2, 4]\n  codec.value.group: [16, 32, 64]\n");
  const ExperimentPlan plan = plan_experiment(file, {}, test::builtin_registry());
  REQUIRE(plan.runs.size() == 6);
  CHECK(plan.runs[0].name == "key.bits=2,value.group=16");
  CHECK(plan.runs[5].name == "key.bits=4,value.group=64");
  CHECK(plan.runs[4].codec.find_path("key.bits")->as_int() == 4);
  CHECK(plan.runs[4].codec.find_path("value.group")->as_int() == 32);
  CHECK(plan.runs[4].params[1] == std::make_pair(std::string("codec.value.group"), std::string("32")));
  REQUIRE(plan.traces.size() == 2);
  CHECK(plan.metrics.size() == all_metric_names().size());
  CHECK(plan.runs[0].lifecycle.type == LifecycleType::paper);
  CHECK(plan.runs[0].lifecycle.residual == 128);
}

TEST_CASE("layering: defaults < preset < file < --set, and named variants", "[experiments][plan]") {
  Scratch s;
  fs::create_directories(s.dir / "presets");
  s.write("presets/toy.yaml", R"(description: a toy preset
codec:
  key: {type: mixed_channel, selector: {type: range, fraction: 0.25, scope: head}}
  value: {type: uniform, bits: 4, group: 32, axis: token}
lifecycle: {type: kivi, residual: 64}
)");
  ::setenv("VIDKV_PRESETS_DIR", (s.dir / "presets").c_str(), 1);
  const std::string file = s.write("layers.yaml", R"(name: layered
traces: [a.h5]
codec:
  preset: toy
  value: {bits: 3}
lifecycle: {group: 16}
sweep:
  - {name: plain}
  - {name: variance, codec.key.selector: {type: variance}}
  - {name: two-bit, codec: {value: {bits: 2}}}
  - {name: short-window, lifecycle: {residual: 8}}
)");
  const ExperimentPlan plan = plan_experiment(file, {"lifecycle.residual=32"}, test::builtin_registry());
  ::unsetenv("VIDKV_PRESETS_DIR");
  REQUIRE(plan.runs.size() == 4);
  const RunPlan& plain = plan.runs[0];
  CHECK(plain.name == "plain");
  CHECK(plain.codec.find_path("value.bits")->as_int() == 3);          // file over preset
  CHECK(plain.codec.find_path("value.axis")->text() == "token");      // preset kept
  CHECK(plain.lifecycle.type == LifecycleType::kivi);                 // preset over defaults
  CHECK(plain.lifecycle.group == 16);                                 // file over defaults
  CHECK(plain.lifecycle.residual == 32);                              // --set over preset
  // Switching the selector to another plugin keeps the parameters both declare (fraction, scope).
  const RunPlan& variance = plan.runs[1];
  CHECK(variance.codec.find_path("key.selector.type")->text() == "variance");
  CHECK(variance.codec.find_path("key.selector.fraction")->as_double() == 0.25);
  CHECK(variance.codec.find_path("key.selector.scope")->text() == "head");
  CHECK(plan.runs[2].codec.find_path("value.bits")->as_int() == 2);
  // A variant's lifecycle overrides the keys it names for that run only, over --set too; the rest stays layered.
  const RunPlan& short_window = plan.runs[3];
  CHECK(short_window.lifecycle.residual == 8);
  CHECK(short_window.lifecycle.group == 16);
  CHECK(short_window.lifecycle.type == LifecycleType::kivi);
  CHECK(plan.runs[2].lifecycle.residual == 32);
}

TEST_CASE("a --set of a path every run of the sweep sets is refused, and --set sweep.PATH sets one sweep entry", "[experiments][plan]") {
  Scratch s;
  const std::string file = s.write("sweep.yaml", R"(name: swept
traces: [a.h5]
codec: {key: {type: uniform, bits: 2}, value: {type: uniform, bits: 2, axis: token}}
sweep:
  codec.key.bits: [2, 4]
  codec.value.bits: [2, 4]
)");
  // Every run sets codec.key.bits from the sweep (line 5), so the --set value would be used by none (it was recorded
  // in config.yaml and dropped without a word, and its value never checked: bits=x passed).
  for (const char* set : {"codec.key.bits=8", "codec.key.bits=x"}) {
    const std::string m = message_of([&] { plan_experiment(file, {set}, test::builtin_registry()); });
    INFO(m);
    CHECK(m.find("--set " + std::string(set) + ": every run of the sweep sets codec.key.bits itself (" + file + ":5:") !=
          std::string::npos);
    CHECK(m.find("--set 'sweep.codec.key.bits=[...]'") != std::string::npos);
  }
  // A path no run sets, and one entry of the sweep map replaced (its key is a dotted path: not split into maps).
  const ExperimentPlan plan = plan_experiment(file, {"codec.key.group=64", "sweep.codec.key.bits=[8]"}, test::builtin_registry());
  REQUIRE(plan.runs.size() == 2);
  for (const RunPlan& run : plan.runs) {
    CHECK(run.codec.find_path("key.bits")->as_int() == 8);
    CHECK(run.codec.find_path("key.group")->as_int() == 64);
  }
  // A sweep of named variants: --set sweep.PATH has no map to set an entry of.
  const std::string variants = s.write("variants.yaml", "name: v\ntraces: [a.h5]\ncodec: {preset: kivi-2}\nsweep:\n  - {name: a}\n");
  const std::string m = message_of([&] { plan_experiment(variants, {"sweep.codec.key.bits=[8]"}, test::builtin_registry()); });
  CHECK(m.find("the file's sweep is a list of named variants") != std::string::npos);
}

TEST_CASE("a value listed twice in a sweep entry is refused at its line", "[experiments][plan]") {
  Scratch s;
  // Line 5, column 23: the second 2 (was "FILE: two runs are both named 'key.bits=2'", without a line).
  const std::string file = s.write("dup.yaml", "name: d\ntraces: [a.h5]\ncodec: {preset: kivi-2}\nsweep:\n  codec.key.bits: [2, 2]\n");
  const std::string m = message_of([&] { plan_experiment(file, {}, test::builtin_registry()); });
  CHECK(m.find(file + ":5:23: ") != std::string::npos);
  CHECK(m.find("sweep: codec.key.bits lists 2 twice") != std::string::npos);
}

TEST_CASE("a plugin's refusal of a trace's prefill block is a ConfigError before any cell", "[experiments][plan]") {
  // The bundled synthetic trace: 2 KV heads, head_dim 64, 1024 tokens, none generated (the whole trace is the
  // prefill: paper G = 32 quantizes 1024 tokens of each side at once). wide_blocks_only refuses fewer channels
  // than min_channels: 32 takes the 64 channels, 128 does not.
  Scratch s;
  const std::string trace = std::string(VIDKV_SOURCE_DIR) + "/traces/data/synthetic-default.h5";
  const std::string file = s.write("wide.yaml", "name: w\ntraces: " + trace +
                                                    "\ncodec:\n  key: {type: half_step}\n  value: {type: wide_blocks_only}\n"
                                                    "sweep:\n  codec.value.min_channels: [32, 128]\n");
  const PluginRegistry fixtures = test::fixture_registry();
  const ExperimentPlan plan = plan_experiment(file, {}, fixtures);
  REQUIRE(plan.runs.size() == 2);
  const std::string m = message_of([&] { check_prefill_blocks(plan, fixtures, trace); });
  INFO(m);
  CHECK(m.find("run 'value.min_channels=128' on " + trace + ": the value quantizer") != std::string::npos);
  CHECK(m.find("refuses the prefill's block of 2 KV heads x 1024 tokens x 64 channels: fewer than 128 channels") != std::string::npos);
  // Only min_channels 32: nothing refused.
  const ExperimentPlan fine = plan_experiment(file, {"sweep.codec.value.min_channels=[32]"}, fixtures);
  check_prefill_blocks(fine, fixtures, trace);
  // A prefill of 20 tokens quantizes nothing (G = 32): the first block a decode step quantizes (R = 128 tokens) is
  // checked instead, so the refusal still comes before any cell, at the codec's line (it came at a decode step).
  const ExperimentPlan short_prefill = plan_experiment(file, {"lifecycle.prefill_tokens=20"}, fixtures);
  const std::string d = message_of([&] { check_prefill_blocks(short_prefill, fixtures, trace); });
  CHECK(d.find(file + ":5:") != std::string::npos);
  CHECK(d.find("refuses the first block a decode step quantizes of 2 KV heads x 128 tokens x 64 channels: fewer than 128 "
               "channels") != std::string::npos);
}

TEST_CASE("a channel selector's count above head_dim is refused at the codec's line, not thrown without one",
          "[experiments][plan]") {
  // mixed_channel's supports() asked its selector for the count, which threw a bare ConfigError ("channel selector:
  // count = 100 exceeds the 64 channels of the block") instead of returning false with that reason.
  Scratch s;
  const std::string trace = std::string(VIDKV_SOURCE_DIR) + "/traces/data/synthetic-default.h5";
  const std::string file = s.write("count.yaml", "name: c\ntraces: " + trace +
                                                     "\ncodec:\n  key: {type: mixed_channel, selector: {type: range, count: 100}}\n"
                                                     "  value: {type: uniform, bits: 2}\n");
  const ExperimentPlan plan = plan_experiment(file, {}, test::builtin_registry());
  const std::string m = message_of([&] { check_prefill_blocks(plan, test::builtin_registry(), trace); });
  INFO(m);
  CHECK(m.find(file + ":4:8: ") == 0);  // the key block's line and column
  CHECK(m.find("the key quantizer") != std::string::npos);
  CHECK(m.find("channel selector: count = 100 exceeds the 64 channels of the block") != std::string::npos);
  std::string why;
  const auto q = test::builtin_registry().make_quantizer(plan.runs[0].codec.at("key"));
  CHECK_FALSE(q->supports(Device::cpu, BlockShape{2, 64, 64}, &why));
  CHECK(why.find("count = 100 exceeds the 64 channels") != std::string::npos);
  CHECK(q->supports(Device::cpu, BlockShape{2, 64, 128}));
}

TEST_CASE("resolve_codec builds one side of a preset for the Python API", "[experiments][plan]") {
  Scratch s;
  fs::create_directories(s.dir / "presets");
  s.write("presets/p.yaml", "codec:\n  key: {type: uniform, bits: 2}\n  value: {type: identity}\n");
  ::setenv("VIDKV_PRESETS_DIR", (s.dir / "presets").c_str(), 1);
  ConfigNode codec = parse_yaml_text("{preset: p, part: key}", "python");
  ConfigNode one = resolve_codec(codec, test::builtin_registry());
  CHECK(one.dump() == "{key: {type: uniform, bits: 2}}");
  const std::string m = message_of([&] { resolve_codec(parse_yaml_text("{preset: q}", "python"), test::builtin_registry()); });
  CHECK(m.find("unknown preset 'q' (did you mean 'p'?); valid: p") != std::string::npos);
  ::unsetenv("VIDKV_PRESETS_DIR");
}

TEST_CASE("a preset's refusal brought about by the user's override also names the user's settings", "[experiments][plan]") {
  // The preset's `layout: fragment` (line 2) holds 2-bit codes only; the user's `bits: 3` (e.yaml 5:15, the value's column) is the cause.
  Scratch s;
  fs::create_directories(s.dir / "presets");
  s.write("presets/p.yaml", "codec:\n  key: {type: uniform, bits: 2, layout: fragment}\n  value: {type: identity}\n");
  ::setenv("VIDKV_PRESETS_DIR", (s.dir / "presets").c_str(), 1);
  const std::string file = s.write("e.yaml", "name: t\ntraces: [x.h5]\ncodec:\n  preset: p\n  key: {bits: 3}\n");
  std::string m = message_of([&] { plan_experiment(file, {}, test::builtin_registry()); });
  INFO(m);
  CHECK(m.find("p.yaml:2:") != std::string::npos);  // the preset's line still comes first
  CHECK(m.find("[that line is preset p's; your settings of this block: " + file + ":5:15 codec.key.bits = 3]") !=
        std::string::npos);
  // A refusal at the user's own line is left as it is.
  m = message_of([&] { plan_experiment(s.write("f.yaml", "name: t\ntraces: [x.h5]\ncodec:\n  preset: p\n  key: {bits: 9}\n"), {},
                                       test::builtin_registry()); });
  CHECK(m.find(":5:15: codec.key.bits: bits = 9 is out of range") != std::string::npos);
  CHECK(m.find("that line is preset") == std::string::npos);
  // An unknown key names the key's column, not its value's: still the user's line, left as it is.
  m = message_of([&] { plan_experiment(s.write("g.yaml", "name: t\ntraces: [x.h5]\ncodec:\n  preset: p\n  key: {bitz: 3}\n"), {},
                                       test::builtin_registry()); });
  CHECK(m.find(":5:9: codec.key.bitz: unknown key 'bitz'") != std::string::npos);
  CHECK(m.find("that line is preset") == std::string::npos);
  // And so is a --set's.
  m = message_of([&] { plan_experiment(s.write("h.yaml", "name: t\ntraces: [x.h5]\ncodec: {preset: p}\n"), {"codec.key.bitz=3"},
                                       test::builtin_registry()); });
  CHECK(m.find("unknown key 'bitz'") != std::string::npos);
  CHECK(m.find("that line is preset") == std::string::npos);
  ::unsetenv("VIDKV_PRESETS_DIR");
}

TEST_CASE("an empty traces list is refused at its line, and a message names its path once", "[experiments][plan][errors]") {
  // traces: [] used to plan zero cells and "succeed" with an empty results.csv (a newcomer's trial); and node errors
  // whose text starts with the node's own path ("metrics: the list is empty") printed it twice.
  Scratch s;
  std::string m = message_of([&] {
    plan_experiment(s.write("e.yaml", "name: t\ntraces: []\ncodec: {preset: fp16}\n"), {}, test::builtin_registry());
  });
  CHECK(m.find("e.yaml:2:9: traces: the list is empty; name at least one trace file or glob") != std::string::npos);
  m = message_of([&] {
    plan_experiment(s.write("m.yaml", "name: t\ntraces: [x.h5]\ncodec: {preset: fp16}\nmetrics: []\n"), {}, test::builtin_registry());
  });
  CHECK(m.find(":4:10: metrics: the list is empty") != std::string::npos);
  CHECK(m.find("metrics: metrics:") == std::string::npos);
}

TEST_CASE("a preset or experiment name no file can have is a ConfigError naming the line, not a file-system error",
          "[experiments][plan]") {
  // fuzz_experiment_yaml found `preset:` with a 300-byte name: std::filesystem threw ENAMETOOLONG (an uncaught
  // filesystem_error) instead of the unknown-preset error. Both limits are 200 bytes (presets.h, experiment_plan.h).
  Scratch s;
  const std::string long_name(300, 'k');
  std::string m = message_of([&] {
    plan_experiment(s.write("p.yaml", "name: t\ntraces: [x.h5]\ncodec: {preset: " + long_name + "}\n"), {},
                    test::builtin_registry());
  });
  CHECK(m.find("p.yaml:3") != std::string::npos);
  CHECK(m.find("unknown preset '" + std::string(80, 'k') + "... (300 bytes)'") != std::string::npos);
  CHECK(m.find("valid: ") != std::string::npos);
  m = message_of([&] {
    plan_experiment(s.write("n.yaml", "name: " + long_name + "\ntraces: [x.h5]\ncodec: {preset: kivi-2}\n"), {},
                    test::builtin_registry());
  });
  CHECK(m.find("n.yaml:1") != std::string::npos);
  CHECK(m.find("name: at most 200 bytes and no NUL (it names the results folder), got 300 bytes") != std::string::npos);
  // 200 bytes is still a name: validation goes on to the traces (x.h5 does not exist).
  m = message_of([&] {
    plan_experiment(s.write("ok.yaml", "name: " + std::string(200, 'k') + "\ntraces: [x.h5]\ncodec: {preset: kivi-2}\n"), {},
                    test::builtin_registry());
  });
  CHECK(m.find("name: at most") == std::string::npos);
  CHECK(m.find("no trace matches 'x.h5'") != std::string::npos);
}

TEST_CASE("backend cuda is refused at validation without CUDA, a GPU, or a CUDA implementation of every plugin", "[experiments][plan]") {
  Scratch s;
  // Live mode has no backend: its cache follows the model's device.
  std::string m = message_of([&] {
    plan_experiment(s.write("l.yaml", "name: t\nmodel: {id: x}\nbackend: cuda\ncodec: {preset: kivi-2}\n"), {}, test::builtin_registry());
  });
  CHECK(m.find("backend cuda: in live mode") != std::string::npos);
  CHECK(m.find("model: device: cuda") != std::string::npos);
  // A plugin without a CUDA implementation (the test fixture half_step): refused naming the side and the plugin, at
  // the codec's YAML line (a build without CUDA says so first).
  const PluginRegistry fixtures = test::fixture_registry();
  m = message_of([&] {
    plan_experiment(s.write("f.yaml", "name: t\ntraces: [\"*.h5\"]\nbackend: cuda\ncodec:\n  key: {type: uniform}\n"
                                      "  value: {type: half_step}\n"),
                    {}, fixtures);
  });
#ifdef VIDKV_WITH_CUDA
  CHECK(m.find("backend cuda: run 't': the value quantizer cannot run on cuda: half_step has no CUDA implementation") !=
        std::string::npos);
  CHECK(m.find("f.yaml:6") != std::string::npos);
#else
  CHECK(m.find("cuda is not available: this build has no CUDA backend") != std::string::npos);
#endif
  // A codec with CUDA everywhere (uniform): accepted exactly when a GPU is visible, else refused saying why.
  const std::string why = cuda_backend_unavailable();
  const std::string file = s.write("c.yaml", std::string(kBase) + "backend: cuda\n");
  if (why.empty()) {
    CHECK(plan_experiment(file, {}, test::builtin_registry()).backend == Device::cuda);
  } else {
    m = message_of([&] { plan_experiment(file, {}, test::builtin_registry()); });
    CHECK(m.find("cuda is not available: " + why) != std::string::npos);
  }
}

TEST_CASE("duplicate run names are refused at validation", "[experiments][plan]") {
  Scratch s;
  std::string m;
  m = message_of([&] {
    plan_experiment(s.write("d.yaml", std::string(kBase) + "sweep:\n  - {name: a}\n  - {name: a}\n"), {}, test::builtin_registry());
  });
  CHECK(m.find("duplicate variant name 'a'") != std::string::npos);
}

TEST_CASE("an empty sweep list is refused at its line (it would give no runs)", "[experiments][plan]") {
  Scratch s;
  const std::string m = message_of([&] { plan_experiment(s.write("e.yaml", std::string(kBase) + "sweep: []\n"), {}, test::builtin_registry()); });
  CHECK(m.find("e.yaml:") != std::string::npos);
  CHECK(m.find("sweep: an empty list gives no runs") != std::string::npos);
}

TEST_CASE("the KIVI lifecycle with per-channel values is refused with the measured bits, per-token values pass",
          "[experiments][plan][kivi]") {
  // KIVI encodes each value leaving its window as a 1-token block. uniform 2-bit, axis channel (groups of 32
  // tokens of one channel): a 1-token block has one fp16 scale and min per element, 2 + 32 = 34 bits per element,
  // against 2 + 32/32 = 3 on 128-token blocks. Axis token (KIVI's own values): 3 bits either way.
  Scratch s;
  const std::string per_channel = s.write("c.yaml", std::string(kBase) +
                                                        "lifecycle: {type: kivi}\n"
                                                        "sweep:\n  - {name: bad, codec: {value: {axis: channel}}}\n");
  const std::string m = message_of([&] { plan_experiment(per_channel, {}, test::builtin_registry()); });
  CHECK(m.find("run 'bad': lifecycle type kivi") != std::string::npos);
  CHECK(m.find("34.00 bits per element on them (3.00 on 128-token blocks)") != std::string::npos);
  CHECK(m.find("value axis: token") != std::string::npos);
  const std::string per_token = s.write("t.yaml", std::string(kBase) + "lifecycle: {type: kivi}\n");
  CHECK(message_of([&] { plan_experiment(per_token, {}, test::builtin_registry()); }).empty());
  const std::string paper = s.write("p.yaml", std::string(kBase) + "lifecycle: {type: paper}\n"
                                                                  "sweep:\n  - {name: ok, codec: {value: {axis: channel}}}\n");
  CHECK(message_of([&] { plan_experiment(paper, {}, test::builtin_registry()); }).empty());
}

TEST_CASE("lifecycle value_block: measured on blocks of its size under kivi, refused by line under paper and release",
          "[experiments][plan][kivi]") {
  // Per-channel 2-bit values (groups of 32 tokens) in blocks of value_block B tokens: B = 32 holds whole groups,
  // 2 + 32/32 = 3 bits per element as on 128-token blocks (accepted); B = 8 cuts each group to 8 tokens, one fp16
  // scale and min per 8 elements: 2 + 32/8 = 6 bits, more than 1 above 3 (refused, naming the block size).
  Scratch s;
  const std::string wide = s.write("w.yaml", std::string(kBase) + "lifecycle: {type: kivi, value_block: 32}\n"
                                                                 "sweep:\n  - {name: ok, codec: {value: {axis: channel}}}\n");
  CHECK(message_of([&] { plan_experiment(wide, {}, test::builtin_registry()); }).empty());
  const std::string narrow = s.write("n.yaml", std::string(kBase) + "lifecycle: {type: kivi, value_block: 8}\n"
                                                                   "sweep:\n  - {name: bad, codec: {value: {axis: channel}}}\n");
  const std::string m = message_of([&] { plan_experiment(narrow, {}, test::builtin_registry()); });
  CHECK(m.find("blocks of 8 tokens (value_block)") != std::string::npos);
  CHECK(m.find("6.00 bits per element on them (3.00 on 128-token blocks)") != std::string::npos);
  for (const char* type : {"paper", "release"}) {
    CAPTURE(type);
    const std::string other = s.write("o.yaml", std::string(kBase) + "lifecycle:\n  type: " + type + "\n  value_block: 4\n");
    const std::string e = message_of([&] { plan_experiment(other, {}, test::builtin_registry()); });
    CHECK(e.find("o.yaml:") != std::string::npos);
    CHECK(e.find("value_block 4 applies to type kivi only") != std::string::npos);
  }
}
