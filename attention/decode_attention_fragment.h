// The fragment kernel of fused decode attention (decode_attention_fragment.cu): caches whose codes are stored in the
// fragment layout (quantization/group_format.h, "The fragment layout"): kivi-2-shaped ones (uniform's layout
// fragment on both sides) and VidKV-shaped ones (mixed_channel keys of uniform and sign children in layout fragment,
// ternary values in packing fragment: FragmentFormats below), read as mma.m16n8k16 A
// operands without the other kernels' staging: each lane loads its own 16-byte quads of a 32-token tile and turns each
// 32-bit field pair into an fp16 pair of codes with one mask of the word shifted (the codes as fp16 subnormals:
// subnormal_code_pair; the design measured in prototypes/fragment_attention/ took a mask-or with an fp16 exponent and
// an fp16 subtraction; the tile's bytes reach shared memory by plain cp.async copies, with no rearrangement). Which
// formats and tiles it takes; host-device, C++17, no CUDA headers.
//
// Arithmetic (decode_attention_tolerance.h, 6.): the scores are s_t = 2^e c [sum_i x_i c_ti + sum_i y_i] with the
// query row scaled into [-1, 1] by a power of two and held as fp16, q''_i = fp16(q_i / 2^e) (exact for fp16 and
// bf16 queries in fp16's normal range), c = log2(e) / sqrt(D) in fp32, x_i = fp16(q''_i scale_i) (one hmul2: the
// exact product rounded once; |q''| <= 1 and fp16 metadata, so no factor can overflow fp16), y_i = q''_i min_i exact
// (an MMA of A = the mins and B = q''); the values o_c += sum_t fp16(p~_t scale_tg) c_tc + sum_t p~_t min_tg with
// p~_t = fp16(p_t) (p <= 1: no overflow; the mins' products again exact in an MMA of A = the mins and B = p~). Every
// code is exact, as the fp16 subnormal code x 2^(s - 24) (subnormal_code_pair; undone per MMA row by a power of two),
// and the MMAs accumulate in fp32, the subnormal codes' products less precisely than normal ones (6.'s last
// paragraph). Single fp16
// factors instead of the tensor-core kernel's bf16 hi + lo pairs: half the MMAs on the codes, a relative rounding of
// 2^-10 per factor (fp16 SDPA rounds its probabilities to fp16 too). The vidkv instance the same on the query carried
// into each key block's coordinates (Problem::transformed: x_i = fp16(q''_i a_i) over the part indices, the low
// children's a_i the sign scale, b_i = 0) and with the trits for the values (o_c += sum_t p~_t t_tc, as the slots'
// sum minus the probabilities' sum); its bound is
// 6. over the part indices (decode_attention_tolerance.h fragment_score_terms).
#pragma once

#include <cstdint>

#include "vidkv/attention/decode_attention_format.h"
#include "vidkv/attention/decode_attention_tables.h"
#include "vidkv/core/host_device.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"

namespace vidkv::attention_fragment {

namespace af = attention_format;

// Head dims the kernel is built for (its registers: D / 16 value accumulator tiles, D / 32 key words per lane).
VIDKV_HOST_DEVICE constexpr bool head_dim_ok(std::int64_t d) { return d == 64 || d == 128; }

// Whether a side's single child is uniform 2-bit codes in layout fragment grouped along `axis` with fp16 metadata.
VIDKV_HOST_DEVICE inline bool child_ok(const af::ChildFormat& f, group_format::GroupAxis axis) {
  return f.codec == af::ChildCodec::uniform && f.bits == 2 && f.layout == group_format::CodeLayout::fragment &&
         f.axis == axis && f.scale_dtype == DType::f16;
}

// The two format sets the fragment kernel reads (FragmentFormats), each with its own instance:
//   kivi: keys one uniform child (not mixed), channel-axis, 2 bits, layout fragment, fp16 scale and min, groups a
//     multiple of 32 tokens (a 32-token tile lies in one group of every channel); values the same token-axis with
//     groups a multiple of 16 channels (one group per 16-channel MMA tile; a group of head_dim or more covers the
//     row; the kernel is instantiated per value group size); head_dim 64 or 128. kivi-2-fragment.
//   vidkv: head_dim 128; keys mixed_channel with one split for every KV head (selector scope layer) of 64 high
//     channels, uniform 2-bit channel-axis layout fragment (fp16, groups a multiple of 32), and 64 low channels, sign
//     fft real, zero_one, channel-axis layout fragment (fp16, groups a multiple of 32: its FFT components read
//     against the transformed query, Problem::transformed); values ternary packing fragment, magnitude_free (no
//     metadata: A = the trits, B = the probabilities). VidKV 1.5-bit keys and 1.58-bit values in the fragment
//     layouts (2.0 bits per value instead of base3's 1.6): vidkv-k1.5-v1.58-fragment.
// Not the query heads: the tables are built before the queries are seen (Problem::qpk is 0 then); DecodeAttention's
// own limit of 8 per KV head is the B operand's 8 columns.
enum class FragmentFormats : std::uint8_t { none, kivi, vidkv };
constexpr std::int64_t kVidkvHeadDim = 128, kVidkvHigh = 64;

VIDKV_HOST_DEVICE inline bool vidkv_keys_ok(const af::SideFormat& k, std::int64_t d) {
  const af::ChildFormat &hi = k.first, &lo = k.second;
  return d == kVidkvHeadDim && k.mixed && !k.mask_per_head && k.high == kVidkvHigh && child_ok(hi, group_format::GroupAxis::channel) &&
         hi.group % 32 == 0 && lo.codec == af::ChildCodec::sign && lo.layout == group_format::CodeLayout::fragment &&
         lo.axis == group_format::GroupAxis::channel && lo.fft_real && !lo.fft_complex && !lo.symmetric &&
         lo.scale_dtype == DType::f16 && lo.group % 32 == 0;
}
VIDKV_HOST_DEVICE inline bool vidkv_values_ok(const af::SideFormat& v) {
  return !v.mixed && !v.token_mixed && v.first.codec == af::ChildCodec::ternary &&
         v.first.packing == ternary_format::Packing::fragment && !v.first.scaled;
}

VIDKV_HOST_DEVICE inline FragmentFormats fragment_formats(const attention_tables::Problem& p) {
  if (p.key.token_mixed || p.value.mixed || p.value.token_mixed) return FragmentFormats::none;
  if (p.key.mixed) return vidkv_keys_ok(p.key, p.channels) && vidkv_values_ok(p.value) ? FragmentFormats::vidkv : FragmentFormats::none;
  if (!head_dim_ok(p.channels)) return FragmentFormats::none;
  return child_ok(p.key.first, group_format::GroupAxis::channel) && p.key.first.group % 32 == 0 &&
                 child_ok(p.value.first, group_format::GroupAxis::token) && p.value.first.group % 16 == 0
             ? FragmentFormats::kivi
             : FragmentFormats::none;
}
// Whether the fragment kernel takes p's fast tiles (either format set).
VIDKV_HOST_DEVICE inline bool formats_ok(const attention_tables::Problem& p) { return fragment_formats(p) != FragmentFormats::none; }

// Whether fragment_residual_kernel (decode_attention_fragment.cu) can take p's general tiles in place of the general
// kernel's compact instance: p.general_narrow_only (every general tile a narrow residual-window tile of at most 8
// tokens, values exact, keys exact or, with kivi's formats, inside one whole fragment tile; with vidkv's formats the
// build admits exact keys only) with fp16 stores whose rounding to p.residual_dtype changes nothing (fp16 or fp32: the
// exact tokens enter the MMAs as the fp16 they are stored as), at the fragment kernel's head dims (64 or 128).
// DecodeAttention also honours VIDKV_CUDA_ATTENTION_RESIDUAL=cuda_cores (the compact instance, A / B measurements).
VIDKV_HOST_DEVICE inline bool residual_tensor_core_formats(const attention_tables::Problem& p) {
  return p.general_narrow_only && fragment_formats(p) != FragmentFormats::none && p.general_narrow_dtype == DType::f16 &&
         (p.residual_dtype == DType::f16 || p.residual_dtype == DType::f32);
}

// A tile's metadata as the kernel copies it (issue_tile), host-device so that [cpu] tests check these addresses
// against the plugin's bytes. Keys, stored group-major (group_format::group_major_meta; fragment_tile requires it): the D
// entries of the group `group_index` of KV head h start at entry key_meta_base, channel c's scale and min at entry
// key_meta_base + c of the scales and the mins sections (2 D contiguous bytes each). Values, token-major: token j
// (0 .. 31) of the tile starting at block token tr0 has its group gr at entry value_meta_base + j groups_per_row + gr.
VIDKV_HOST_DEVICE constexpr std::int64_t key_meta_base(std::int64_t h, std::int64_t groups_per_row, std::int64_t group_index,
                                                       std::int64_t d) {
  return group_format::group_major_index(h, group_index, 0, d, groups_per_row);
}
VIDKV_HOST_DEVICE constexpr std::int64_t value_meta_base(std::int64_t h, std::int64_t tokens, std::int64_t tr0,
                                                         std::int64_t groups_per_row) {
  return (h * tokens + tr0) * groups_per_row;
}

// Where a lane finds its A registers in its D / 16 words of a tile (group_format.h: register r of the lane is field
// r % 8 of word r / 8). Keys, A = codes [16 tokens x 16 channels] of token half mt and channel chunk kc (of `chunks`
// = D / 16): register 4 (mt chunks + kc) + a. Values, A = codes [16 channels x 16 tokens] of channel tile mv and token
// chunk kt: register 4 (2 mv + kt) + a.
VIDKV_HOST_DEVICE constexpr int key_word(int mt, int kc, int chunks) { return (mt * chunks + kc) / 2; }
VIDKV_HOST_DEVICE constexpr int key_field(int mt, int kc, int chunks, int a) { return 4 * ((mt * chunks + kc) % 2) + a; }
VIDKV_HOST_DEVICE constexpr int value_word(int mv) { return mv; }
VIDKV_HOST_DEVICE constexpr int value_field(int kt, int a) { return 4 * kt + a; }

// 1-bit codes (vidkv's low keys: sign's layout fragment, 16 registers per lane word): the A registers of chunk kc
// (of 4: 64 components) and token half mt are word mt of the lane's two, fields 4 kc + a.
VIDKV_HOST_DEVICE constexpr int bit_key_word(int mt) { return mt; }
VIDKV_HOST_DEVICE constexpr int bit_key_field(int kc, int a) { return 4 * kc + a; }

// Codes as fp16 subnormals (the kernels' A registers). Field j of a lane word of b-bit codes (b = 2: fields 0-7; b = 1:
// 0-15) holds its register's two codes at bits b j and 16 + b j; field j feeds A register a = j % 4, whose rows are
// g + 8 (a & 1), so its row half is j & 1. The kernels place the codes of row half r at bit s = subnormal_row_shift(r, b)
// of each fp16 half (2-bit: rows g at bit 4, rows g + 8 at bit 6; 1-bit: 8 and 9): they shift the word right by
// subnormal_source_shift(j, b) = b j - s (left where negative) and clear every other bit (one LOP3 with an immediate
// mask), which leaves in each half the fp16 subnormal code x 2^(s - 24), exact: no exponent to OR in and no fp16
// subtraction (the prototype's lop3 + hsub2 took two instructions per register). Every code of an MMA row carries the
// one factor 2^(s - 24), undone in fp32 by subnormal_unscale(row half, b) = 2^(24 - s) (decode_attention_fragment.cu
// code_pair, row_unscale). Why these bits: the tensor cores align a subnormal's products as if its leading bit were at
// 2^-14 (decode_attention_tolerance.h 6.'s last paragraph), so the closer the codes sit to the top of the subnormal
// range (bit 9: a code c < 2^b needs s + b <= 10), the less they lose; these are the highest bits at which the rows
// of both halves come from as few shifts as at the bottom (2-bit: shifts -4, 4, 8 and none, 3 per word as for s = 0, 2;
// 1-bit: -8, -6, .., 6, 7 per word, as before), and their lowest, kSubnormalLowestShift = 4 (2-bit rows g), sets the
// bound (s = 0, 2 in the first version: 2^4 times looser).
VIDKV_HOST_DEVICE constexpr int subnormal_row_shift(int row_half, int bits) {
  return bits == 2 ? (row_half == 0 ? 4 : 6) : (row_half == 0 ? 8 : 9);
}
// The lowest placement of either width, whose 2^-s the tolerance's alignment term takes (4: 2-bit rows g).
constexpr int kSubnormalLowestShift = [] {
  int lowest = subnormal_row_shift(0, 2);
  for (int bits = 1; bits <= 2; ++bits)
    for (int half = 0; half < 2; ++half) {
      const int s = subnormal_row_shift(half, bits);
      lowest = s < lowest ? s : lowest;
    }
  return lowest;
}();
static_assert(kSubnormalLowestShift == 4, "the 2^-4 that tolerance 6. and its docs state");
VIDKV_HOST_DEVICE constexpr int subnormal_field_shift(int j, int bits) { return subnormal_row_shift(j & 1, bits); }
VIDKV_HOST_DEVICE constexpr int subnormal_source_shift(int j, int bits) { return bits * j - subnormal_field_shift(j, bits); }
// The pair of field j of word w as the kernels form it (two fp16 bit patterns, low code in the low half).
VIDKV_HOST_DEVICE constexpr std::uint32_t subnormal_code_pair(std::uint32_t w, int j, int bits) {
  return (subnormal_source_shift(j, bits) >= 0 ? w >> subnormal_source_shift(j, bits) : w << -subnormal_source_shift(j, bits)) &
         (((1u << bits) - 1u) * 0x00010001u << subnormal_field_shift(j, bits));
}
// 2^(24 - s) for the codes of A rows g + 8 row_half: the exact fp32 factor that makes an MMA row's sum of
// code x 2^(s - 24) products the sum of the codes' products.
VIDKV_HOST_DEVICE constexpr float subnormal_unscale(int row_half, int bits) {
  return static_cast<float>(1u << (24 - subnormal_row_shift(row_half, bits)));
}
static_assert(subnormal_row_shift(0, 2) + 2 <= 10 && subnormal_row_shift(1, 2) + 2 <= 10 && subnormal_row_shift(0, 1) + 1 <= 10 &&
                  subnormal_row_shift(1, 1) + 1 <= 10,
              "every code below fp16's exponent field: a subnormal");
static_assert(subnormal_code_pair(0xE4E4E4E4u, 5, 2) == (1u << 6) * 0x00010001u,
              "fields 4-7 of 0xE4 are codes 0-3: field 5 (bits 10-11) is 1, from the word shifted by 4, at bit 6");
static_assert(subnormal_code_pair(0x00000003u, 0, 2) == 0x30u && subnormal_code_pair(0x00020000u, 0, 2) == 0x200000u,
              "field 0 (bits 0-1, 16-17) from the word shifted left by 4, at bits 4-5 and 20-21");
static_assert(subnormal_code_pair(0x00008000u, 15, 1) == 0x200u && subnormal_code_pair(0x40000000u, 14, 1) == 0x1000000u,
              "1-bit field 15 (bit 15) from the word shifted by 6 at bit 9; field 14's high code (bit 30) at bit 24");

// The key metadata in a warp's shared memory (decode_attention_fragment.cu, issue_tile): word w of a tile's D / 2
// scale words (channels 2 w and 2 w + 1 = 16 kc + 2 t4 + 8 pr, so t4 = w % 4, pr = (w / 4) % 2, kc = w / 8) sits at
// key_meta_slot(w, D) = t4 key_meta_stride(D) + 2 kc + pr: lane t4 reads its D / 8 words (position i = 2 kc + pr)
// as D / 32 16-byte loads, and the rows, padded by 4 words, put the four t4 of a quarter warp on distinct banks. The
// mins the same.
VIDKV_HOST_DEVICE constexpr int key_meta_stride(int d) { return d / 8 + 4; }
VIDKV_HOST_DEVICE constexpr int key_meta_slot(int w, int d) {
  return (w & 3) * key_meta_stride(d) + 2 * (w >> 3) + ((w >> 2) & 1);
}

// The values' B operand of value group gr (of `groups` per token row) for a lane's token pair j, j + 1 (j even): the
// pair's 2 groups halves are `groups` words from half groups j (token j's group gr at half gr, token j + 1's at half
// groups + gr), and the fp16 pair (token j's, token j + 1's) is __byte_perm(word value_pair_word(gr, groups, 0), word
// value_pair_word(gr, groups, 1), value_pair_selector(gr, groups)) (PRMT: selector nibble k picks byte k of the
// result, 0-3 from the first word, 4-7 from the second).
VIDKV_HOST_DEVICE constexpr int value_pair_word(int gr, int groups, int second) { return (second ? groups + gr : gr) / 2; }
VIDKV_HOST_DEVICE constexpr unsigned value_pair_selector(int gr, int groups) {
  return (gr % 2 ? 0x32u : 0x10u) | ((groups + gr) % 2 ? 0x7600u : 0x5400u);
}

}  // namespace vidkv::attention_fragment
