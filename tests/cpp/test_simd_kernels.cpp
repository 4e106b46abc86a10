// Edge cases of the AVX-512 kernels (plugins/quantizers/*/*_avx512.cpp) that random data almost never reaches,
// against the scalar reference. The conformance test (test_plugin_conformance.cpp) covers shapes, tails, signed
// zeros and every preset; here:
//   * uniform's reciprocal quotient (uniform_avx512.cpp codes_fast) must fall back to the division wherever the
//     multiply could round to another code: values placed exactly on, and 1..3 ulps around, every rounding
//     boundary mn' + (k + 1/2) s' of their group, for every bit width, both axes, fp16 and fp32 metadata, over
//     ranges from 1e-3 to 1e4 (fp16: well inside its range) and offsets far larger than the range;
//   * the thread-scratch rule: a composite's parts are decoded into scratch, never streamed.
// On a CPU without AVX-512 the portable paths run; the test says so and still checks them against the reference.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "boundary_values.h"
#include "catch.h"
#include "test_registry.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/cpu_implementation.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/thread_scratch.h"
#include "vidkv/quantization/simd/cpu_features.h"

namespace vidkv::test {

TEST_CASE("uniform AVX-512 codes equal the reference on and around every rounding boundary", "[quantizer][optimized]") {
  if (!simd::avx512_kernels()) WARN("no AVX-512 on this CPU: the portable optimised path is what is checked here");
  const PluginRegistry& ref_registry = test::builtin_registry(CpuImplementation::reference);
  const PluginRegistry& opt_registry = test::builtin_registry(CpuImplementation::optimized);
  for (const int bits : {1, 2, 4, 8})
    for (const char* axis : {"channel", "token"})
      for (const char* scale_dtype : {"fp16", "fp32"}) {
        const DType sd = std::string(scale_dtype) == "fp16" ? DType::f16 : DType::f32;
        const ConfigNode block = quantizer_block(
            "uniform", {{"bits", std::to_string(bits)}, {"axis", axis}, {"scale_dtype", scale_dtype}, {"group", "32"}});
        const auto ref = ref_registry.make_quantizer(block);
        const auto opt = opt_registry.make_quantizer(block);
        const BoundaryBlock data = boundary_block(bits, std::string(axis) == "channel", sd);
        const BlockShape& shape = data.shape;
        const std::vector<float>& x = data.values;
        INFO("bits " << bits << ", axis " << axis << ", scale_dtype " << scale_dtype);
        const auto want = encode(*ref, shape, x), got = encode(*opt, shape, x);
        std::size_t first_diff = want.size();
        for (std::size_t i = 0; i < want.size() && first_diff == want.size(); ++i)
          if (want[i] != got[i]) first_diff = i;
        INFO("first differing byte " << first_diff << " of " << want.size());
        REQUIRE(first_diff == want.size());
        const auto y_ref = decode(*ref, shape, want), y_opt = decode(*opt, shape, got);
        CHECK(std::memcmp(y_ref.data(), y_opt.data(), y_ref.size() * sizeof(float)) == 0);
      }
}

TEST_CASE("thread scratch blocks nest and know their own memory", "[core][optimized]") {
  const ThreadScratch outer(1000);
  float* a = outer.data();
  {
    const ThreadScratch inner(3 << 20);  // 12 MiB: the huge-page branch
    CHECK(inner.data() != a);
    CHECK(ThreadScratch::holds(inner.data() + (3 << 20) - 1));
    CHECK(ThreadScratch::holds(a + 999));
    inner.data()[0] = 1.0f;
    a[0] = 2.0f;
    CHECK(inner.data()[0] == 1.0f);  // distinct memory
  }
  std::vector<float> elsewhere(16);
  CHECK_FALSE(ThreadScratch::holds(elsewhere.data()));
  const ThreadScratch again(10);  // reuses the inner slot (depth 1)
  CHECK(ThreadScratch::holds(again.data()));
}

}  // namespace vidkv::test
