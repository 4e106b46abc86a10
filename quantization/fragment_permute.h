// The fragment layout (group_format.h) of a whole packed block, from and to the same block in layout dense: what a
// quantizer with a fragment layout (uniform's and sign's `layout: fragment`, ternary's `packing: fragment`) does
// around a dense-layout tier. Every section has the same size in both layouts: the codes section is permuted code by
// code, and the metadata sections after it (scales, then mins, each `meta_sections` x group_count() entries of
// `meta_size` bytes) entry by entry where the layout stores them group-major (group_format::group_major_meta:
// channel-axis grids with a whole 32-token tile), else kept as they are. A block that is all tail
// (group_format::fragment_all_tail) has dense's bytes: nothing moves.
//
// Host: dense_to_fragment / fragment_to_dense (this file, fragment_permute.cpp). Device: the same on CUDA memory and
// a stream (fragment_permute_cuda, quantization/cuda/fragment_permute.cu; one thread per byte or entry, race-free).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vidkv/quantization/group_format.h"

namespace vidkv::fragment_permute {

// What moves in a block: its grid, the codes' form, and the metadata sections that follow the codes.
struct BlockSections {
  group_format::GroupGrid grid{};
  group_format::FragmentForm form{group_format::FragmentOperand::keys, 2};
  int meta_size = 2;      // bytes per metadata entry (2: fp16 / bf16, 4: fp32)
  int meta_sections = 0;  // metadata sections right after the codes (uniform: scales and mins 2, sign 1, ternary 0 or 1)

  std::size_t code_bytes() const {
    return group_format::code_bytes(group_format::CodeLayout::dense, grid, form.bits);
  }
  std::size_t meta_bytes() const {
    return static_cast<std::size_t>(meta_sections) * static_cast<std::size_t>(grid.group_count()) *
           static_cast<std::size_t>(meta_size);
  }
  // Whether the metadata is stored group-major (and so permuted).
  bool group_major() const {
    return meta_sections > 0 && group_format::group_major_meta(group_format::CodeLayout::fragment, grid);
  }
  // Bytes that move: the codes, and the metadata where group-major (the rest of the block is the same in both).
  std::size_t moved_bytes() const { return code_bytes() + (group_major() ? meta_bytes() : 0); }
};

// In place: `bytes` (moved_bytes() or more) coded in layout dense become the fragment layout's.
void dense_to_fragment(const BlockSections& s, std::uint8_t* bytes);
// `fragment` (the block in the fragment layout) into `dense` (the block in layout dense, `total` bytes: the sections
// that do not move are copied).
void fragment_to_dense(const BlockSections& s, const std::uint8_t* fragment, std::uint8_t* dense, std::size_t total);

// A plugin's CPU tier in a fragment layout through its tier in the dense layout (`dense`: the same parameters with the
// dense layout or packing): encode codes the block dense, then the bytes are permuted in place; decode permutes
// into a copy of `total` bytes (the input is const) and decodes that, or decodes the input itself where the block
// is all tail (dense's bytes).
template <class P, void (*Encode)(const P&, const group_format::GroupGrid&, const float*, std::uint8_t*)>
void encode_through_dense(const P& dense, const BlockSections& s, const float* in, std::uint8_t* out) {
  Encode(dense, s.grid, in, out);
  dense_to_fragment(s, out);
}
template <class P, void (*Decode)(const P&, const group_format::GroupGrid&, const std::uint8_t*, float*)>
void decode_through_dense(const P& dense, const BlockSections& s, std::size_t total, const std::uint8_t* in, float* out) {
  if (group_format::fragment_all_tail(s.grid)) return Decode(dense, s.grid, in, out);
  std::vector<std::uint8_t> bytes(total);
  fragment_to_dense(s, in, bytes.data(), total);
  Decode(dense, s.grid, bytes.data(), out);
}

}  // namespace vidkv::fragment_permute

namespace vidkv::fragment_permute_cuda {

// The same on device memory, enqueued on `stream` (scratch by DeviceBuffer on that stream). Throws CudaError naming
// `who` where a launch fails. Defined in CUDA builds only (VIDKV_WITH_CUDA), as the plugins' CUDA paths that call them.
void dense_to_fragment(const fragment_permute::BlockSections& s, std::uint8_t* bytes, void* stream, const char* who);
void fragment_to_dense(const fragment_permute::BlockSections& s, const std::uint8_t* fragment, std::uint8_t* dense,
                       std::size_t total, void* stream, const char* who);

}  // namespace vidkv::fragment_permute_cuda
