#include <random>
#include <vector>

#include "catch.h"
#include "vidkv/core/bit_packing.h"

using namespace vidkv;

TEST_CASE("release layout reproduces the released code's test vectors", "[core][packing][release]") {
  // algorithms.md 2.4: 1-bit group of 32 where only elements 0 and 5 are non-negative -> 0x00000021
  // (bit 0 and bit 5 set: 1 + 32 = 33 = 0x21).
  std::uint32_t w1[1] = {0};
  for (unsigned j = 0; j < 32; ++j) bits::release_put(w1, j, 1, (j == 0 || j == 5) ? 1u : 0u);
  CHECK(w1[0] == 0x00000021u);
  // 2-bit codes [3, 1, 0, ..., 0, 2 at index 15] -> 3 | 1 << 2 | 2 << 30 = 0x80000007; code 3 at index 16 -> next
  // word 0x00000003.
  std::uint32_t w2[2] = {0, 0};
  bits::release_put(w2, 0, 2, 3);
  bits::release_put(w2, 1, 2, 1);
  bits::release_put(w2, 15, 2, 2);
  bits::release_put(w2, 16, 2, 3);
  CHECK(w2[0] == 0x80000007u);
  CHECK(w2[1] == 0x00000003u);
  CHECK(bits::release_get(w2, 15, 2) == 2u);
  CHECK(bits::release_words(33, 2) == 3u);
}

TEST_CASE("dense bitstreams round-trip every width and pad to whole bytes", "[core][packing]") {
  std::mt19937 rng(7);
  for (unsigned b = 1; b <= 8; ++b) {
    const std::size_t n = 37;
    std::vector<unsigned> codes(n);
    for (auto& c : codes) c = rng() & ((1u << b) - 1u);
    std::vector<std::uint8_t> stream(bits::dense_bytes(n, b) + 1, 0);
    stream.back() = 0xA5;  // guard byte
    for (std::size_t j = 0; j < n; ++j) bits::dense_put(stream.data(), j, b, codes[j]);
    for (std::size_t j = 0; j < n; ++j) REQUIRE(bits::dense_get(stream.data(), j, b) == codes[j]);
    CHECK(stream.back() == 0xA5);
    CHECK(bits::dense_bytes(n, b) == (n * b + 7) / 8);
  }
  // Hand-worked: 2-bit codes 3, 1, 2 -> bits 11 | 01 << 2 | 10 << 4 = 0b100111 = 0x27.
  std::uint8_t s[1] = {0};
  bits::dense_put(s, 0, 2, 3);
  bits::dense_put(s, 1, 2, 1);
  bits::dense_put(s, 2, 2, 2);
  CHECK(s[0] == 0x27);
}

TEST_CASE("trits pack five to a byte", "[core][packing]") {
  // (-1, 0, +1, +1, -1) -> digits (0, 1, 2, 2, 0) -> 0 + 1*3 + 2*9 + 2*27 + 0*81 = 75.
  const std::int8_t t[5] = {-1, 0, 1, 1, -1};
  const std::uint8_t byte = bits::trit_pack5(t, 5);
  CHECK(byte == 75);
  for (unsigned i = 0; i < 5; ++i) CHECK(bits::trit_get(byte, i) == t[i]);
  const std::int8_t all_plus[5] = {1, 1, 1, 1, 1};
  CHECK(bits::trit_pack5(all_plus, 5) == 242);
  CHECK(bits::trit_bytes(11) == 3u);
}
