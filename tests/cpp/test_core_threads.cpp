#include <atomic>
#include <stdexcept>
#include <vector>

#include "catch.h"
#include "vidkv/core/channel_selector.h"
#include "vidkv/core/packed_layout.h"
#include "vidkv/core/thread_pool.h"

using namespace vidkv;

TEST_CASE("parallel_for runs every index once and rethrows the first error", "[core][threads]") {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(1000, [&](std::int64_t i) { hits[static_cast<std::size_t>(i)]++; });
  for (auto& h : hits) REQUIRE(h.load() == 1);
  CHECK_THROWS_AS(pool.parallel_for(50, [](std::int64_t i) { if (i == 17) throw std::runtime_error("boom"); }), std::runtime_error);
  // Nested use cannot deadlock: the caller finishes the inner loop itself.
  std::atomic<int> inner{0};
  pool.parallel_for(4, [&](std::int64_t) { pool.parallel_for(10, [&](std::int64_t) { inner++; }); });
  CHECK(inner.load() == 40);
}

TEST_CASE("top-k keeps the largest scores, ties to the lower index, ascending", "[core][selector]") {
  CHECK(top_k_indices({1, 5, 3, 5, 0}, 2) == std::vector<std::int64_t>{1, 3});
  CHECK(top_k_indices({2, 2, 2, 2}, 3) == std::vector<std::int64_t>{0, 1, 2});
  CHECK(top_k_indices({1, 2}, 0).empty());
}

TEST_CASE("packed layouts count bytes and bits", "[core][layout]") {
  // 2-bit codes over 32x4 elements (32 bytes) with fp16 scale and min per 32-token group of each of 4 channels
  // (4 groups x 2 x 2 bytes = 16 bytes): (32 + 16) * 8 / 128 = 3.0 effective bits, 2 nominal.
  PackedLayout l(128, 2.0);
  l.add("codes", SectionKind::codes, 32).add("scales", SectionKind::scales, 8).add("mins", SectionKind::zero_points, 8);
  CHECK(l.bytes() == 48);
  CHECK(l.effective_bits() == 3.0);
  PackedLayout parent;
  parent.append_child("high", l);
  PackedLayout one(128, 1.0);
  one.add("codes", SectionKind::codes, 16);
  parent.append_child("low", one);
  CHECK(parent.elements() == 256);
  CHECK(parent.nominal_bits() == 1.5);
  CHECK(parent.sections()[3].name == "low.codes");
  CHECK(parent.offset_of(3) == 48);
}
