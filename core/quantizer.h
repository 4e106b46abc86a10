// The codec contract every quantizer implements (faiss style: bytes, encode, decode).
//
// A quantizer works on a block `[heads, tokens, channels]`: the K or the V of one layer (all its KV heads, so that
// layer-wide statistics such as the release's channel selection are possible) or a single slab (heads == 1).
// Everything needed to decode lives in the bytes: codes, scales, channel masks, protected-token masks. The
// TokenContext is known to both sides (token modality and positions are not stored).
//
// Two ways in:
//  - encode()/decode() on fp32 host memory: the CPU implementations (reference or optimised, chosen when the
//    registry builds the plugin, core/cpu_implementation.h). Plugins override these.
//  - encode_view()/decode_view() (the backend seam): a TensorView of fp32, fp16 or bf16 values on the cpu or on a
//    cuda device, and an Execution naming the device and the CUDA stream. On cpu they convert to fp32 (exact) and
//    call encode()/decode(); on cuda they call the plugin's CUDA implementation (encode_cuda/decode_cuda) on the
//    device memory as is, with no copy to the host: the live cache calls them on torch tensors' memory. A plugin
//    without a CUDA implementation, or a build without CUDA, throws NotSupportedError naming the plugin.
// The packed bytes are the same on every device (bit-identical to the CPU reference, except where a plugin's
// header names a tolerance: the FFT of `sign`).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "vidkv/core/execution.h"
#include "vidkv/core/packed_layout.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

// Which implementation of a plugin runs on a device for a shape (written to provenance.json). `exact`: its
// bytes equal the CPU reference's; when false (FFT paths), `name` enters the resume fingerprint so that results
// of different tiers are never mixed.
struct KernelTier {
  std::string name;  // e.g. "uniform:avx512", "sign:cuda+cufft", "mixed_channel(uniform:cuda, sign:cuda+cufft)"
  bool exact = true;
};

class Quantizer {
 public:
  virtual ~Quantizer() = default;

  // Exact sections and bytes that encode() writes for a block of `shape` under `ctx`, with the element count and
  // the nominal (paper-convention) bits. Depends only on shape and token metadata, never on values.
  virtual PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const = 0;

  // in:  shape.elements() fp32 values, [heads, tokens, channels] row-major, host memory, all finite.
  // out: exactly layout(shape, ctx).bytes() bytes, host memory. Deterministic for the same input and ctx.
  virtual void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const = 0;

  // in:  the bytes that encode() wrote for the same shape and ctx.
  // out: shape.elements() fp32 values, [heads, tokens, channels] row-major.
  virtual void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx, float* out) const = 0;

  // The seam. in: contiguous [heads, tokens, channels] (rank 3) or [tokens, channels] (rank 2, one head), fp32,
  // fp16 or bf16, on ex.device. out: layout(shape, ctx).bytes() bytes on the same device. On cuda the call is
  // asynchronous on ex.cuda_stream. Throws ShapeError for a bad rank or a view on the wrong device,
  // NotSupportedError where the device has no implementation.
  void encode_view(const TensorView& in, const TokenContext& ctx, std::uint8_t* out, const Execution& ex) const;
  // in: the bytes encode_view/encode wrote (on ex.device). out: the block, fp32, fp16 or bf16 (rounded to nearest
  // even from the fp32 reconstruction), on ex.device.
  void decode_view(const std::uint8_t* in, const TokenContext& ctx, const TensorView& out, const Execution& ex) const;

  // Whether this quantizer can run on `device` for `shape`; when not, `why` (if given) says why.
  virtual bool supports(Device device, const BlockShape& shape, std::string* why = nullptr) const;
  // The implementation that runs on `device` for `shape`.
  virtual KernelTier tier(Device device, const BlockShape& shape) const;
  // Whether encode() reads the recorded query states (ctx.queries), itself or through a child (a token protector
  // such as semantic_attention). False by default; composites ask their children. The experiment runner reads a
  // trace's /query datasets only when a metric or the codec needs them.
  virtual bool reads_recorded_queries() const { return false; }
  // Whether encode() reads ctx.keys (the layer's full-precision keys, LayerKeys), itself or through a child (a token
  // protector such as semantic_attention). False by default; composites ask their children. A LayerCache that keeps
  // every token exact exposes its keys only to a codec whose key or value quantizer says so: exposing them copies
  // the layer's keys as fp32 for every block it encodes (cache_lifecycle.h, exposes_keys).
  virtual bool reads_context_keys() const { return false; }
  // Whether a block of `shape` is token-separable: every section of layout(shape, ctx) is [heads][tokens][w] bytes
  // (w per section, the same for every ctx), and a token's bytes depend on that token's values alone, so that the
  // bytes of n consecutive one-token blocks, interleaved section by section and head by head, are exactly the bytes
  // of the n tokens encoded as one block. The kivi lifecycle merges its one-token value blocks where this holds
  // (cache_lifecycle.h). False by default; a plugin that returns true must keep it true of every tier.
  virtual bool token_separable(const BlockShape& shape) const {
    (void)shape;
    return false;
  }

 protected:
  // The CUDA implementation, on device memory, enqueued on ex.cuda_stream. A call on a non-empty block enqueues at
  // least one stream operation. ex.after_independent_kernel (execution.h) may be ignored; a plugin that honours it
  // does so in its first kernel only, and gives children a fresh Execution without it. Overridden (with
  // cuda_implemented()) by plugins that have one, in builds with CUDA; the defaults throw NotSupportedError.
  virtual bool cuda_implemented() const { return false; }
  virtual void encode_cuda(const TensorView& in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out,
                           const Execution& ex) const;
  virtual void decode_cuda(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx,
                           const TensorView& out, const Execution& ex) const;
  void set_plugin_name(std::string name) { name_ = std::move(name); }

 public:
  // Name used in messages and tiers ("uniform"): set by each plugin's constructor (and by the registry, which
  // knows the name a config used).
  const std::string& plugin_name() const { return name_; }

 private:
  friend class PluginRegistry;
  std::string name_ = "quantizer";
};

// The block shape of a [heads, tokens, channels] or [tokens, channels] view; ShapeError naming `what` otherwise.
BlockShape block_shape_of(const TensorView& view, const std::string& what);

}  // namespace vidkv

// The declarations of a plugin's CUDA entry points, for the `protected:` section of a Quantizer subclass that has a
// CUDA implementation: in builds with CUDA it overrides cuda_implemented() (true), encode_cuda and decode_cuda, which
// the plugin's .cpp defines (calling its <plugin>_cuda.h kernels); in builds without CUDA it declares nothing, so the
// base class refuses the cuda device with the reason.
#ifdef VIDKV_WITH_CUDA
#define VIDKV_QUANTIZER_CUDA_OVERRIDES                                                                               \
  bool cuda_implemented() const override { return true; }                                                             \
  void encode_cuda(const ::vidkv::TensorView& in, const ::vidkv::BlockShape& shape, const ::vidkv::TokenContext& ctx, \
                   std::uint8_t* out, const ::vidkv::Execution& ex) const override;                                    \
  void decode_cuda(const std::uint8_t* in, const ::vidkv::BlockShape& shape, const ::vidkv::TokenContext& ctx,        \
                   const ::vidkv::TensorView& out, const ::vidkv::Execution& ex) const override;
#else
#define VIDKV_QUANTIZER_CUDA_OVERRIDES
#endif
