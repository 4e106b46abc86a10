// The base3 reader of code_stream.h: a 243-entry table of the five digits of every byte value.
#include "vidkv/quantization/code_stream.h"

#include <array>
#include <vector>

#include "vidkv/quantization/cpu_dispatch.h"

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

// packed[k][c] = sum_s tile[k * per_byte + s][c] << (bits * s): the k-th byte of every column's run.
VIDKV_CPU_CLONES
void pack_bytes(const std::uint8_t* __restrict tile, std::int64_t bytes, std::int64_t width, unsigned bits,
                std::uint8_t* __restrict packed) {
  const unsigned per_byte = 8u / bits;
  for (std::int64_t k = 0; k < bytes; ++k) {
    std::uint8_t* dst = packed + k * width;
    const std::uint8_t* first = tile + k * per_byte * width;
    for (std::int64_t c = 0; c < width; ++c) dst[c] = first[c];
    for (unsigned s = 1; s < per_byte; ++s) {
      const std::uint8_t* row = first + s * width;
      const unsigned shift = bits * s;
      for (std::int64_t c = 0; c < width; ++c) dst[c] = static_cast<std::uint8_t>(dst[c] | (row[c] << shift));
    }
  }
}

// tile[k * per_byte + s][c] = (packed[k][c] >> (bits * s)) & mask.
VIDKV_CPU_CLONES
void unpack_bytes(const std::uint8_t* __restrict packed, std::int64_t bytes, std::int64_t width, unsigned bits,
                  std::uint8_t* __restrict tile) {
  const unsigned per_byte = 8u / bits;
  const unsigned mask = (1u << bits) - 1u;
  for (std::int64_t k = 0; k < bytes; ++k) {
    const std::uint8_t* src = packed + k * width;
    for (unsigned s = 0; s < per_byte; ++s) {
      std::uint8_t* row = tile + (k * per_byte + s) * width;
      const unsigned shift = bits * s;
      for (std::int64_t c = 0; c < width; ++c) row[c] = static_cast<std::uint8_t>((src[c] >> shift) & mask);
    }
  }
}

bool whole_bytes(std::int64_t n, unsigned bits) { return (8u % bits) == 0 && n % (8u / bits) == 0; }

}  // namespace

void write_columns(std::uint8_t* stream, const std::uint8_t* tile, std::int64_t n, std::int64_t width, unsigned bits,
                   const std::uint64_t* col_bit, std::uint8_t* scratch) {
  const bool fast = whole_bytes(n, bits);
  const std::int64_t bytes = fast ? n / (8 / bits) : 0;
  if (fast) pack_bytes(tile, bytes, width, bits, scratch);
  std::vector<std::uint8_t> run;  // slow path only: one column's codes
  for (std::int64_t c = 0; c < width; ++c) {
    if (fast && (col_bit[c] & 7u) == 0) {
      std::uint8_t* p = stream + (col_bit[c] >> 3);
      for (std::int64_t k = 0; k < bytes; ++k) p[k] = scratch[k * width + c];
      continue;
    }
    run.resize(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < n; ++t) run[static_cast<std::size_t>(t)] = tile[t * width + c];
    write_codes(stream, col_bit[c], run.data(), n, bits);
  }
}

void read_columns(const std::uint8_t* stream, std::uint8_t* tile, std::int64_t n, std::int64_t width, unsigned bits,
                  const std::uint64_t* col_bit, std::uint8_t* scratch) {
  const bool fast = whole_bytes(n, bits);
  const std::int64_t bytes = fast ? n / (8 / bits) : 0;
  bool all_fast = fast;
  for (std::int64_t c = 0; c < width && all_fast; ++c) all_fast = (col_bit[c] & 7u) == 0;
  if (all_fast) {
    for (std::int64_t c = 0; c < width; ++c) {
      const std::uint8_t* p = stream + (col_bit[c] >> 3);
      for (std::int64_t k = 0; k < bytes; ++k) scratch[k * width + c] = p[k];
    }
    unpack_bytes(scratch, bytes, width, bits, tile);
    return;
  }
  std::vector<std::uint8_t> run(static_cast<std::size_t>(n));
  for (std::int64_t c = 0; c < width; ++c) {
    read_codes(stream, col_bit[c], run.data(), n, bits);
    for (std::int64_t t = 0; t < n; ++t) tile[t * width + c] = run[static_cast<std::size_t>(t)];
  }
}

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
