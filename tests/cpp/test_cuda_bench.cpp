// `vidkv bench --backend cuda` (experiments/src/cuda_bench.h) at a small size: every preset asked for gets a row
// per token count, with positive figures whose encode+decode is the harmonic combination of encode and decode, or
// the reason it did not run; the copy bandwidth is measured; the table prints every row. Skipped without a GPU;
// without one, run_cuda_bench refuses with the reason.
#include <cmath>
#include <string>

#include "catch.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/cuda_bench.h"

using namespace vidkv;

TEST_CASE("the CUDA bench measures every preset at every token count, or says why not", "[cuda]") {
  CudaBenchOptions o;
  o.tokens = {256, 300};  // 300: a tail group
  o.layers = 3;
  o.distinct_layers = 2;
  o.warmup = 1;
  o.repeats = 3;
  o.presets = {"kivi-2", "vidkv-k1.5-v1.58"};
  std::string why;
  if (cuda_device_count(&why) == 0) {
    CHECK_THROWS_AS(run_cuda_bench(o), NotSupportedError);
    VIDKV_SKIP("no CUDA device: " << why << " (checked that run_cuda_bench refuses)");
  }
  const CudaBenchResult r = run_cuda_bench(o);
  CHECK(r.copy_gbps > 0);
  REQUIRE(r.rows.size() == 4);
  int measured = 0;
  for (const auto& row : r.rows) {
    INFO(row.preset << " at " << row.tokens << " tokens: " << row.skipped);
    if (!row.skipped.empty()) continue;
    CHECK(row.encode_gbps > 0);
    CHECK(row.decode_gbps > 0);
    // bytes / (t_enc + t_dec) = 1 / (1/enc + 1/dec)
    CHECK(std::fabs(row.encode_decode_gbps - 1.0 / (1.0 / row.encode_gbps + 1.0 / row.decode_gbps)) <= 1e-9 * row.encode_decode_gbps);
    CHECK(row.replay_gbps > 0);
    CHECK(!row.tiers.empty());
    ++measured;
  }
  CHECK(r.rows[0].preset == "kivi-2");
  CHECK(r.rows[0].skipped.empty());  // uniform has CUDA kernels
  const std::string table = cuda_bench_markdown(r, {1.0, 0.0, 1.0, 0.0});
  CHECK(table.find("| kivi-2 | 256 |") != std::string::npos);
  CHECK(table.find("| kivi-2 | 300 |") != std::string::npos);
  CHECK(table.find("device-to-device copy") != std::string::npos);
  CHECK(measured >= 2);
}
