// Nominal (paper) and effective (stored) bits of the primitive quantizers on [4 heads x 1024 tokens x 128 channels],
// against algorithms.md section 7.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"

using namespace vidkv;
using namespace vidkv::test;

TEST_CASE("nominal and effective bits of the primitive quantizers", "[quantizer][bits]") {
  const BlockShape s{4, 1024, 128};
  struct Row {
    const char* label;
    std::string name;
    KeyValues params;
    double nominal;
    double effective;
  };
  const double log2_3 = std::log2(3.0);
  // Effective bits, G = 32, fp16 metadata:
  //   uniform 2-bit: 2 + (16 + 16)/32 = 3.0 (dense and release: 1024 tokens = 64 full words per row)
  //   sign dense: 1 + 16/32 = 1.5; sign release complex FFT: 2 * (1 + 16/32 + 16/32) = 4.0; real FFT dense 1.5
  //   ternary base3: ceil(E / 5) bytes = 1.6000061 bits (E = 524288 is not a multiple of 5); slots2 2.0;
  //   release 2 + 16/32 + 16/32 = 3.0
  const std::vector<Row> rows{
      {"identity fp16", "identity", {}, 16, 16},
      {"uniform 2-bit dense", "uniform", {}, 2, 3.0},
      {"uniform 2-bit release", "uniform", {{"layout", "release"}}, 2, 3.0},
      {"uniform 4-bit dense", "uniform", {{"bits", "4"}}, 4, 5.0},
      {"sign dense", "sign", {}, 1, 1.5},
      {"sign release", "sign", {{"layout", "release"}}, 1, 2.0},
      {"sign dense complex fft", "sign", {{"fft", "complex"}}, 1, 3.0},
      {"sign release complex fft", "sign", {{"fft", "complex"}, {"layout", "release"}}, 1, 4.0},
      {"sign dense real fft", "sign", {{"fft", "real"}}, 1, 1.5},
      {"ternary base3", "ternary", {}, log2_3, 8.0 * double((s.elements() + 4) / 5) / double(s.elements())},
      {"ternary slots2", "ternary", {{"packing", "slots2"}}, log2_3, 2.0},
      {"ternary release", "ternary", {{"packing", "release"}}, log2_3, 3.0},
      {"ternary base3 scaled", "ternary", {{"reconstruction", "scaled"}}, log2_3, 8.0 * double((s.elements() + 4) / 5) / double(s.elements()) + 0.5},
  };
  std::printf("%-28s %8s %10s\n", "[4 x 1024 x 128], G = 32", "nominal", "effective");
  for (const auto& r : rows) {
    const auto l = make(r.name, r.params)->layout(s, {});
    std::printf("%-28s %8.4f %10.6f\n", r.label, l.nominal_bits(), l.effective_bits());
    INFO(r.label);
    CHECK(std::fabs(l.nominal_bits() - r.nominal) < 1e-12);
    CHECK(std::fabs(l.effective_bits() - r.effective) < 1e-12);
  }
  CHECK(std::fabs(make("ternary")->layout(s, {}).effective_bits() - 1.6) < 1e-5);
}
