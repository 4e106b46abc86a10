#include <fstream>
#include <sstream>
#include <string>

#include "catch.h"
#include "test_registry.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/preset_bits.h"

using namespace vidkv;

namespace {
PresetBits row(const std::vector<PresetBits>& rows, const std::string& name) {
  for (const auto& r : rows)
    if (r.preset == name) return r;
  FAIL("no preset " << name);
  return {};
}
}  // namespace

TEST_CASE("release layouts reproduce the release's stored bits, ours reach <= 2.0 at 1.5/1.58", "[experiments][bits]") {
  const BlockShape shape{4, 8192, 128};
  const auto rows = preset_bits_table(shape, test::builtin_registry());
  // algorithms.md section 7: 1.5-bit key 3.5 = (3.0 for 2-bit + 4.0 for complex-FFT 1-bit) / 2; ternary 3.0;
  // 2-bit KIVI 3.0 = 2 + (16 + 16) / 32.
  CHECK(row(rows, "vidkv-k1.5-v1.58-release").key_effective == Approx(3.5).epsilon(1e-4));
  CHECK(row(rows, "vidkv-k1.5-v1.58-release").value_effective == Approx(3.0).epsilon(1e-4));
  CHECK(row(rows, "vidkv-k1.5-v1.58-release").kv_effective == Approx(3.25).epsilon(1e-4));
  CHECK(row(rows, "kivi-2").kv_effective == 3.0);
  // Ours: K = (3.0 + 1.5) / 2 plus a 128-bit channel mask per layer; V = 1.6 (5 trits per byte).
  const PresetBits ours = row(rows, "vidkv-k1.5-v1.58");
  CHECK(ours.key_nominal == 1.5);
  CHECK(ours.value_nominal == Approx(1.58496).epsilon(1e-4));
  CHECK(ours.value_effective == Approx(1.6).epsilon(1e-4));
  CHECK(ours.kv_effective <= 2.0);
}

TEST_CASE("docs/bits.md is the output of `vidkv presets bits`", "[experiments][bits][docs]") {
  std::ifstream in(std::string(VIDKV_SOURCE_DIR) + "/docs/bits.md");
  REQUIRE(in);
  std::stringstream doc;
  doc << in.rdbuf();
  const BlockShape shape{4, 8192, 128};
  const std::string table = preset_bits_markdown(preset_bits_table(shape, test::builtin_registry()), shape);
  INFO("regenerate the table with: build/bin/vidkv presets bits");
  CHECK(doc.str().find(table) != std::string::npos);
}
