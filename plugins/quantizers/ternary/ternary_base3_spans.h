// Which bytes of the base3 codes each group of 32 trits writes when many threads code the groups of one stream at
// once (ternary.cu's encode_channel_warp with VIDKV_CUDA_TERNARY_BASE3=in-kernel), and which of them need an atomic
// add. Host and device; the CPU test test_ternary_base3_spans.cpp replays the kernel's assignment with it.
//
// The base3 codes hold trit i of the canonical stream (GroupGrid::stream_index) as digit i % 5 of byte i / 5, weight
// 3^(i % 5), the digit being the slot t + 1 (ternary_format.h put_trit). A group of 32 trits at stream position p
// covers 6.4 bytes, so its first and last bytes are usually shared with the groups before and after it.
//  * A span is the groups that one writer codes in stream order (a warp: up to 4 row groups of one channel); a group
//    that is not the span's last gets `next`, the first 4 slots of the group after it, and writes the bytes whose
//    first trit it holds, whole (base3_group_bytes). The span's first group also writes the digits it holds of the byte
//    that starts before it; the span's last group writes its digits of a byte that runs past the span. Those two are
//    partial bytes: the writers of the spans on either side add their own digits to the same byte. Digit sums add
//    without carry (a byte is at most 2 + 6 + 18 + 54 + 162 = 242).
//  * Base3Span names the 4-byte words that hold the span's first and last bytes. Any byte written by two spans lies in
//    such a word of both (a span covers at least 32 trits, so 7 or more bytes, and only its end bytes can be shared),
//    so writers add every byte of those words atomically into zeroed words and store every other byte once: no word
//    is written both ways. Where no span comes before (the stream's start) or after (its end), the word is not
//    shared: the last byte is then whole (absent digits are 0) and its word may run past the codes section, where no
//    atomic may go.
#pragma once

#include <cstdint>

#include "vidkv/core/host_device.h"

namespace vidkv::ternary_base3 {

// The byte of five 2-bit slots (slot i at bits [2 i, 2 i + 2) of `ten`): digit i has weight 3^i. Slots 0 add 0, so
// partial digit sets give partial sums of the byte.
VIDKV_HOST_DEVICE inline unsigned byte_of_slots(unsigned ten) {
  unsigned byte = 0;
  for (int i = 4; i >= 0; --i) byte = byte * 3u + ((ten >> (2 * i)) & 3u);
  return byte;
}

// The span [p0, p1) of a stream of `total` trits: the indices of the 4-byte words that hold its first and last bytes
// where a span lies before / after it, else -1.
struct Span {
  std::int64_t w0, w1;
  VIDKV_HOST_DEVICE bool shared_word(std::int64_t byte) const { return byte / 4 == w0 || byte / 4 == w1; }
};
VIDKV_HOST_DEVICE inline Span span_of(std::int64_t p0, std::int64_t p1, std::int64_t total) {
  return {p0 > 0 ? p0 / 5 / 4 : -1, p1 < total ? (p1 - 1) / 5 / 4 : -1};
}

// Calls put(byte, value) for each byte that the group of 32 trits at stream position p writes (slots: slot i at bits
// [2 i, 2 i + 2); next: the first 4 slots of the group after it in its span, 0 where it is the span's last;
// span_first: it is the span's first group). At most 8 calls, in increasing byte order; a partial byte's value is
// this group's digits only.
template <class Put>
VIDKV_HOST_DEVICE inline void group_bytes(std::int64_t p, std::uint64_t slots, unsigned next, bool span_first, Put&& put) {
  const unsigned m = static_cast<unsigned>(p % 5), r = (5 - m) % 5;  // the first r trits belong to byte p / 5 (m != 0)
  if (m != 0 && span_first) put(p / 5, byte_of_slots((static_cast<unsigned>(slots) & ((1u << (2 * r)) - 1u)) << (2 * m)));
  const std::int64_t b0 = (p + r) / 5;
  for (unsigned k = 0; k < 7; ++k) {
    const unsigned first = r + 5 * k;  // the byte's first slot in the group
    if (first >= 32) break;
    unsigned ten = static_cast<unsigned>(slots >> (2 * first)) & 0x3FFu;
    if (first > 27) ten = (ten | (next << (2 * (32 - first)))) & 0x3FFu;  // its last slots from the next group
    put(b0 + k, byte_of_slots(ten));
  }
}

}  // namespace vidkv::ternary_base3
