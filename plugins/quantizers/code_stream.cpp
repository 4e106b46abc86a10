// The base3 reader of code_stream.h: a 243-entry table of the five digits of every byte value.
#include "vidkv/plugins/quantizers/code_stream.h"

#include <array>

namespace vidkv::code_stream {

namespace {

struct TritTable {
  std::array<std::array<std::uint8_t, 5>, 256> digits{};
  TritTable() {
    for (unsigned b = 0; b < 243; ++b) {
      unsigned v = b;
      for (unsigned d = 0; d < 5; ++d, v /= 3u) digits[b][d] = static_cast<std::uint8_t>(v % 3u);
    }
  }
};

const TritTable& trit_table() {
  static const TritTable table;
  return table;
}

}  // namespace

void read_trits(const std::uint8_t* __restrict stream, std::int64_t s0, std::uint8_t* __restrict slots, std::int64_t n) {
  const auto& t = trit_table().digits;
  const std::uint8_t* p = stream + s0 / 5;
  unsigned digit = static_cast<unsigned>(s0 % 5);
  std::int64_t i = 0;
  for (; i < n && digit != 0; ++i) {
    slots[i] = t[*p][digit];
    if (++digit == 5) {
      digit = 0;
      ++p;
    }
  }
  for (; i + 5 <= n; i += 5, ++p)
    for (unsigned d = 0; d < 5; ++d) slots[i + d] = t[*p][d];
  for (unsigned d = 0; i < n; ++i, ++d) slots[i] = t[*p][d];
}

}  // namespace vidkv::code_stream
