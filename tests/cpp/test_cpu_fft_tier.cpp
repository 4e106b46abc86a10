// core/cpu_fft_tier.h: the channel FFT tier of the optimised CPU path, chosen through ScopedCpuFftTier (or
// VIDKV_SIGN_FFT), followed by sign's encode/decode and its Quantizer::tier(), and timed tier against tier by
// `vidkv bench` (experiments/src/cpu_bench.h).
#include <cstdlib>
#include <optional>
#include <string>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "scoped_env.h"
#include "test_registry.h"
#include "vidkv/core/cpu_fft_tier.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/cpu_bench.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {
// VIDKV_SIGN_FFT set (nullptr: unset) for a scope.
struct SignFftEnv : vidkv::test::ScopedEnv {
  explicit SignFftEnv(const char* value) : vidkv::test::ScopedEnv("VIDKV_SIGN_FFT", value) {}
};
}  // namespace

TEST_CASE("FFT tier names round-trip, a scoped tier wins over the environment and nests", "[core][fft-tier]") {
  for (const CpuFftTier t : all_cpu_fft_tiers()) CHECK(parse_cpu_fft_tier(cpu_fft_tier_name(t), "test") == t);
  CHECK_THROWS_WITH(parse_cpu_fft_tier("fftw3", "--fft-tiers"),
                    "--fft-tiers: unknown FFT tier 'fftw3' (valid: avx512, fftw-batched, fftw)");
  const SignFftEnv env(nullptr);
  CHECK(cpu_fft_tier() == CpuFftTier::avx512);  // the default
  {
    const SignFftEnv batched("fftw-batched");
    CHECK(cpu_fft_tier() == CpuFftTier::fftw_batched);
    {
      const ScopedCpuFftTier outer(CpuFftTier::fftw);
      CHECK(cpu_fft_tier() == CpuFftTier::fftw);
      {
        const ScopedCpuFftTier inner(CpuFftTier::avx512);
        CHECK(cpu_fft_tier() == CpuFftTier::avx512);
      }
      CHECK(cpu_fft_tier() == CpuFftTier::fftw);
    }
    CHECK(cpu_fft_tier() == CpuFftTier::fftw_batched);
  }
  const SignFftEnv bad("fftw-fast");
  CHECK_THROWS_WITH(cpu_fft_tier(),
                    "environment variable VIDKV_SIGN_FFT: unknown FFT tier 'fftw-fast' (valid: avx512, fftw-batched, fftw)");
}

TEST_CASE("sign follows the FFT tier: names what runs, and the fftw tier writes the reference's bytes",
          "[core][fft-tier][quantizer][sign]") {
  const BlockShape s{2, 96, 64};
  const std::vector<float> x = gaussian(static_cast<std::size_t>(s.elements()), 11);
  const auto ref = builtin_registry(CpuImplementation::reference).make_quantizer(quantizer_block("sign", {{"fft", "real"}}));
  const auto opt = make("sign", {{"fft", "real"}});
  const auto ref_bytes = encode(*ref, s, x);
  const auto ref_out = decode(*ref, s, ref_bytes);
  {
    const ScopedCpuFftTier t(CpuFftTier::fftw);
    CHECK(opt->tier(Device::cpu, s).name.find("+fft-") == std::string::npos);
    CHECK(opt->tier(Device::cpu, s).exact);
    // FFTW's per-row plans, as the reference: bit-identical bytes and values.
    const auto bytes = encode(*opt, s, x);
    CHECK(bytes == ref_bytes);
    CHECK(decode(*opt, s, bytes) == ref_out);
  }
  {
    const ScopedCpuFftTier t(CpuFftTier::fftw_batched);
    const KernelTier k = opt->tier(Device::cpu, s);
    CHECK(k.name.find("+fft-fftw-batched") != std::string::npos);
    CHECK_FALSE(k.exact);
  }
  {
    const ScopedCpuFftTier t(CpuFftTier::avx512);
    const KernelTier k = opt->tier(Device::cpu, s);
    // The AVX-512 transform where the CPU has it (n = 64 is in its range), FFTW's per-row plans elsewhere.
    CHECK((k.name.find("+fft-avx512") != std::string::npos) == !k.exact);
    CHECK(k.name.find("fftw-batched") == std::string::npos);
  }
  // The reference ignores the tier: always the oracle.
  const ScopedCpuFftTier t(CpuFftTier::fftw_batched);
  CHECK(ref->tier(Device::cpu, s).name == "sign:reference");
  CHECK(encode(*ref, s, x) == ref_bytes);
}

TEST_CASE("the CPU bench times every FFT tier of a sign-FFT preset in one run, and only there", "[bench][fft-tier]") {
  CpuBenchOptions o;
  o.spec = bench_trace_spec("2x1x256x128");
  o.repeats = 2;
  o.presets = {"kivi-2", "vidkv-k1.5-v1.58"};
  o.fft_tiers = {CpuFftTier::fftw_batched, CpuFftTier::avx512};
  const CpuBenchResult r = run_cpu_bench(o);
  REQUIRE(r.rows.size() == 2);
  REQUIRE(r.fft_rows.size() == 2);  // kivi-2 has no FFT: no rows
  CHECK(r.fft_rows[0].preset == "vidkv-k1.5-v1.58");
  CHECK(r.fft_rows[0].fft_tier == CpuFftTier::fftw_batched);
  CHECK(r.fft_rows[0].key_tier.find("+fft-fftw-batched") != std::string::npos);
  CHECK(r.fft_rows[1].fft_tier == CpuFftTier::avx512);
  for (const auto& f : r.fft_rows) {
    CHECK(f.encode_gbps > 0);
    CHECK(f.decode_gbps > 0);
    CHECK(f.encode_decode_gbps == Approx(1.0 / (1.0 / f.encode_gbps + 1.0 / f.decode_gbps)).epsilon(1e-9));
  }
  const std::string table = cpu_bench_markdown(r);
  CHECK(table.find("| kivi-2 | avx512") == std::string::npos);
  // Where the AVX-512 transforms ran (the kernel tier says "+fft-avx512"), the ratio; else the row says what ran and
  // no ratio is given (a CPU without AVX-512 times FFTW's per-row plans in that row).
  if (r.fft_rows[1].key_tier.find("+fft-avx512") != std::string::npos) {
    CHECK(table.find("| vidkv-k1.5-v1.58 | avx512 |") != std::string::npos);
    CHECK(table.find("FFTW batched / AVX-512, encode+decode of vidkv-k1.5-v1.58, this run: ") != std::string::npos);
  } else {
    CHECK(table.find("| vidkv-k1.5-v1.58 | avx512 (not run here: FFTW per-row plans) |") != std::string::npos);
    CHECK(table.find("FFTW batched / AVX-512, encode+decode of vidkv-k1.5-v1.58: no ratio in this run") != std::string::npos);
  }

  o.fft_tiers.clear();
  o.presets = {"vidkv-k1.5-v1.58"};
  CHECK(run_cpu_bench(o).fft_rows.empty());
}

TEST_CASE("the FFT tiers' table gives each tier's encode+decode over the avx512 tier's", "[bench][fft-tier]") {
  CpuBenchResult r;
  r.shape = "1x1x8x8";
  r.copy_gbps_one_thread = r.copy_gbps_all_threads = 10;
  // enc+dec 2.0 GB/s (avx512) against 1.5 (fftw-batched): 1.5 / 2.0 = 0.750; fftw 1.0 / 2.0 = 0.500.
  r.fft_rows = {{"p", CpuFftTier::avx512, "k:a+fft-avx512", "v:a", 4.0, 4.0, 2.0},
                {"p", CpuFftTier::fftw_batched, "k:b", "v:b", 3.0, 3.0, 1.5},
                {"p", CpuFftTier::fftw, "k:c", "v:c", 2.0, 2.0, 1.0}};
  const std::string table = cpu_bench_markdown(r);
  CHECK(table.find("| p | avx512 | k:a+fft-avx512; v:a | 4 | 4 | 2 | 1.000 |") != std::string::npos);
  CHECK(table.find("| p | fftw-batched | k:b; v:b | 3 | 3 | 1.5 | 0.750 |") != std::string::npos);
  CHECK(table.find("| p | fftw | k:c; v:c | 2 | 2 | 1 | 0.500 |") != std::string::npos);
  CHECK(table.find("FFTW batched / AVX-512, encode+decode of p, this run: 0.750 (1.5 / 2 GB/s)") != std::string::npos);
  // An avx512 row whose transforms did not run (no "+fft-avx512": FFTW's per-row plans ran) is no baseline.
  r.fft_rows[0].key_tier = "k:a";
  const std::string fallback = cpu_bench_markdown(r);
  CHECK(fallback.find("| p | avx512 (not run here: FFTW per-row plans) | k:a; v:a | 4 | 4 | 2 | n/a |") != std::string::npos);
  CHECK(fallback.find("| p | fftw-batched | k:b; v:b | 3 | 3 | 1.5 | n/a |") != std::string::npos);
  CHECK(fallback.find("FFTW batched / AVX-512, encode+decode of p: no ratio in this run, the AVX-512 transforms did not run") !=
        std::string::npos);
  // Without an avx512 row there is nothing to compare with.
  r.fft_rows.erase(r.fft_rows.begin());
  CHECK(cpu_bench_markdown(r).find("| p | fftw-batched | k:b; v:b | 3 | 3 | 1.5 | n/a |") != std::string::npos);
  CHECK(cpu_bench_markdown(r).find("FFTW batched / AVX-512") == std::string::npos);
}
