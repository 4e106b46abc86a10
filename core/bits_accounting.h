// Bits accounting: effective bits, nominal bits and compression ratio of a K/V cache from the bytes it stores.
//
// The one definition every report uses -- the per-layer and per-trace columns of `vidkv run` (results.csv), the
// bits table of the presets (`vidkv presets --bits`), `_vidkv.account_bits` in Python, and through it the live
// cache's VidKVCache.bits() and `vidkv live` -- so they cannot disagree:
//
//   effective bits    = 8 * stored bytes / elements        everything stored: packed codes, scales, zero points,
//                                                          channel and token masks, protected tokens, the
//                                                          full-precision residual window (PackedLayout sections)
//   nominal bits      = element-weighted mean of the code bits per element, the papers' convention (1.5-bit keys
//                       = half 2-bit + half 1-bit, ternary = log2(3)); metadata not counted; a full-precision part
//                       (a lifecycle's residual window) counts its own bits, 16 for fp16
//   compression ratio = 8 * dtype_size(input dtype) / effective bits   (16 / effective bits for fp16 or bf16
//                       input, 32 / effective bits for fp32): how many times fewer bits than the K/V as the model
//                       (or the trace) holds them
//
// K and V are accounted apart (key_*, value_*) and together (element-weighted: total bytes over total elements).
// All quantities are host doubles; bytes and elements are exact in a double up to 2^53.
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/packed_layout.h"

namespace vidkv {

// 8 * bytes / elements: bits stored per element; 0 when elements == 0 (nothing represented).
double effective_bits(double bytes, double elements);

// Bits of the input dtype over `effective`: 8 * dtype_size(input) / effective. Infinite when effective == 0.
double compression_ratio(double effective, DType input);

// Totals of one side of the cache (keys or values): a PackedLayout, or the sum of several (layers, prompts).
struct StoredBits {
  double bytes = 0;                 // every byte stored for this side
  double elements = 0;              // fp values represented
  double nominal_bit_elements = 0;  // sum over the parts of nominal bits x elements
  // Element-weighted mean of the nominal bits: the layout's own value for one layout (kept as given, so one
  // layer's row reports its layout's value exactly), nominal_bit_elements / elements for a sum.
  double nominal_bits = 0;

  static StoredBits of(const PackedLayout& layout);
  static StoredBits of(double bytes, double elements, double nominal_bits);
  // Adds `other`'s bytes, elements and nominal bit-elements; nominal_bits becomes their weighted mean.
  StoredBits& operator+=(const StoredBits& other);

  double effective_bits() const { return vidkv::effective_bits(bytes, elements); }
};

// The bits columns of a result row (names as in results.csv).
struct BitsAccount {
  double key_nominal_bits = 0, value_nominal_bits = 0;
  double key_effective_bits = 0, value_effective_bits = 0;
  double nominal_bits = 0, effective_bits = 0;  // K and V together, element-weighted
  double compression_ratio = 0;                 // against `input`, from effective_bits
};

// Accounts keys and values stored for K/V of dtype `input`. Throws ShapeError when either side represents no
// elements (no bits per element exist then).
BitsAccount account_bits(const StoredBits& key, const StoredBits& value, DType input);

}  // namespace vidkv
