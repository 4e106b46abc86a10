// Host -> device writes carried in kernel parameters (core/cuda/parameter_copy.h): the [cpu] case checks what one
// launch takes (segments, bytes, refusals that leave the writes as they were); the [cuda] case that the enqueued
// writes land at their offsets and nothing else changes.
#include <cstdint>
#include <numeric>
#include <vector>

#include "catch.h"
#include "cuda_test_support.h"
#include "vidkv/core/cuda/parameter_copy.h"

using namespace vidkv;
namespace pc = cuda_parameter_copy;

TEST_CASE("parameter copy: what one launch takes", "[cpu]") {
  std::vector<std::uint8_t> src(pc::kMaxBytes + 8);
  std::iota(src.begin(), src.end(), std::uint8_t{0});
  pc::Writes w;
  CHECK(w.empty());
  CHECK(w.add(100, src.data(), 0));  // nothing to write: accepted, no segment
  CHECK(w.empty());
  REQUIRE(w.add(100, src.data() + 1, 10));
  REQUIRE(w.add(7, src.data() + 20, 3));
  CHECK(w.segments == 2);
  CHECK(w.bytes() == 13);
  CHECK(w.offset[0] == 100);
  CHECK(w.offset[1] == 7);
  CHECK(w.data[0] == 1);   // src[1]
  CHECK(w.data[10] == 20);  // the second write's first byte follows the first's ten
  // More bytes than are left: refused, the writes unchanged.
  CHECK_FALSE(w.add(0, src.data(), pc::kMaxBytes - 12));
  CHECK(w.segments == 2);
  CHECK(w.bytes() == 13);
  // Exactly what is left: taken.
  CHECK(w.add(0, src.data(), pc::kMaxBytes - 13));
  CHECK(w.bytes() == pc::kMaxBytes);
  CHECK_FALSE(w.add(0, src.data(), 1));
  // Segments run out before bytes do.
  pc::Writes s;
  for (int i = 0; i < pc::kMaxSegments; ++i) REQUIRE(s.add(static_cast<std::size_t>(i), src.data(), 1));
  CHECK_FALSE(s.add(0, src.data(), 1));
  CHECK(s.segments == static_cast<std::uint32_t>(pc::kMaxSegments));
  // An offset beyond 32 bits is refused.
  CHECK_FALSE(pc::Writes{}.add(std::size_t{1} << 33, src.data(), 1));
}

#ifdef VIDKV_WITH_CUDA
TEST_CASE("parameter copy: the writes land at their offsets, the other bytes stay", "[cuda]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  constexpr std::size_t n = 3 * pc::kMaxBytes;
  std::vector<std::uint8_t> want(n, 0xAB);
  DeviceBuffer dst(n);
  copy_to_device(dst.data(), want.data(), n);
  std::vector<std::uint8_t> src(pc::kMaxBytes);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint8_t>(i * 7 + 3);
  // Two launches: one of several segments (one of a single byte, one longer than the block's 256 threads, one at the
  // end of the buffer), one that fills a launch's bytes.
  pc::Writes a;
  const std::size_t at[3] = {5, 1000, n - 300}, len[3] = {1, 700, 300};
  std::size_t from = 0;
  for (int s = 0; s < 3; ++s) {
    REQUIRE(a.add(at[s], src.data() + from, len[s]));
    for (std::size_t i = 0; i < len[s]; ++i) want[at[s] + i] = src[from + i];
    from += len[s];
  }
  pc::Writes b;
  REQUIRE(b.add(2000, src.data(), pc::kMaxBytes));
  for (std::size_t i = 0; i < pc::kMaxBytes; ++i) want[2000 + i] = src[i];
  pc::enqueue(dst.data(), a, nullptr);
  pc::enqueue(dst.data(), b, nullptr);
  pc::enqueue(dst.data(), pc::Writes{}, nullptr);  // empty: no launch
  std::vector<std::uint8_t> got(n);
  copy_to_host(got.data(), dst.data(), n);
  REQUIRE(got == want);
}
#endif
