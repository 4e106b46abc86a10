// uniform: CPU scalar reference of asymmetric min/max b-bit group quantization (KIVI; VidKV 2-bit, algorithms.md
// 2.1). The oracle for optimised and CUDA paths. Format, rounding, tail rule and the release differences: uniform.h;
// packed layout: uniform_format.h (codes | scales | mins; effective bits b + 32/G with fp16 metadata).
#include "vidkv/plugins/quantizers/uniform/uniform.h"

#include <string>

#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/uniform/uniform_cuda.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_kernels.h"

namespace vidkv {

namespace {
std::string release_bits_message(int bits) {
  return "layout: release packs 32/bits codes per uint32 word and needs bits in {1, 2, 4, 8}, got bits = " +
         std::to_string(bits) + " (use layout: dense)";
}
std::string fragment_bits_message(int bits) {
  return "layout: fragment holds 2-bit codes only, got bits = " + std::to_string(bits) + " (use layout: dense)";
}
std::string fragment_channels_message(std::int64_t channels) {
  return "layout fragment needs a multiple of 64 channels (whole 16-byte quads per lane of a 32-token tile), got a "
         "block of " + std::to_string(channels) + " channels (use layout: dense)";
}
// The message for a layout that cannot hold `bits`-bit codes, or "" where it can.
std::string layout_bits_problem(group_format::CodeLayout layout, int bits) {
  if (layout == group_format::CodeLayout::release && !group_format::release_bits_ok(static_cast<unsigned>(bits)))
    return release_bits_message(bits);
  if (layout == group_format::CodeLayout::fragment && bits != 2) return fragment_bits_message(bits);
  return {};
}
}  // namespace

void UniformParams::check() const {
  if (const std::string why = layout_bits_problem(layout, bits); !why.empty()) VIDKV_THROW(ConfigError, "uniform: ", why);
}

void UniformParams::validate(const ConfigNode& node) const {
  if (const std::string why = layout_bits_problem(layout, bits); !why.empty()) {
    const ConfigNode* key = node.is_map() ? node.find("layout") : nullptr;
    (key ? *key : node).fail(why + " for uniform");
  }
}

namespace {
// The bits check, before the base's group check (the order of the errors when both are wrong).
const UniformParams& bits_checked(const UniformParams& params) {
  VIDKV_REQUIRE(params.bits >= 1 && params.bits <= 8, ConfigError, "uniform: bits = ", params.bits, " is out of range [1, 8]");
  return params;
}
}  // namespace

UniformQuantizer::UniformQuantizer(const Params& params, CpuImplementation implementation)
    : GroupedQuantizer("uniform", bits_checked(params), implementation) {
  params.check();
}

const UniformQuantizer::CpuKernels& UniformQuantizer::cpu_kernels(const group_format::GroupGrid& g) const {
  return uniform_kernels::choose(implementation_, params_, g);
}

PackedLayout UniformQuantizer::layout(const BlockShape& shape, const TokenContext&) const {
  const auto g = block_grid(shape);
  const auto bits = static_cast<unsigned>(params_.bits);
  VIDKV_REQUIRE(params_.layout != group_format::CodeLayout::fragment || group_format::fragment_ok(g, bits), ShapeError,
                "uniform: ", fragment_channels_message(shape.channels));
  PackedLayout l(shape.elements(), params_.bits);
  l.add("codes", SectionKind::codes, uniform_format::codes_bytes(params_.layout, g, bits));
  l.add("scales", SectionKind::scales, uniform_format::scales_bytes(g, params_.scale_dtype));
  l.add("mins", SectionKind::zero_points, uniform_format::scales_bytes(g, params_.scale_dtype));
  return l;
}

bool UniformQuantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (!Quantizer::supports(device, shape, why)) return false;
  if (params_.layout != group_format::CodeLayout::fragment ||
      group_format::fragment_ok(block_grid(shape), static_cast<unsigned>(params_.bits)))
    return true;
  if (why) *why = "uniform " + fragment_channels_message(shape.channels);
  return false;
}

bool UniformQuantizer::token_separable(const BlockShape& shape) const {
  if (params_.axis != group_format::GroupAxis::token) return false;
  // fragment: a block of fewer than 32 tokens is all tail, stored in dense's token-major order (its bytes are dense's);
  // a whole 32-token tile interleaves its tokens' codes. So KIVI's value tail merges up to 31 tokens per block here
  // (cache_lifecycle.h), where dense reaches 32.
  if (params_.layout == group_format::CodeLayout::fragment)
    return group_format::fragment_all_tail(block_grid(shape)) && (shape.channels * params_.bits) % 8 == 0;
  // release: every token's codes are a row of whole words; dense: one bitstream, split at bytes only where each
  // token's row is whole bytes.
  return params_.layout == group_format::CodeLayout::release || (shape.channels * params_.bits) % 8 == 0;
}

namespace uniform_kernels {

void encode_reference(const UniformParams& p, const group_format::GroupGrid& g, const float* in, std::uint8_t* out) {
  const auto bits = static_cast<unsigned>(p.bits);
  const DType sd = p.scale_dtype;
  const auto sec = uniform_format::sections(p.layout, g, bits, sd, out);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        float mn = in[g.block_offset(h, r, j0)], mx = mn;
        for (std::int64_t j = j0; j < j0 + n; ++j) {
          const float x = in[g.block_offset(h, r, j)];
          mn = x < mn ? x : mn;
          mx = x > mx ? x : mx;
        }
        const auto stored = uniform_format::stored_group(mn, mx, static_cast<float>(uniform_format::max_code(bits)), sd);
        const float scale = stored.scale, stored_mn = stored.mn;
        group_format::put_scalar(scales, group_format::meta_index(p.layout, g, h, r, gi), sd, scale);
        group_format::put_scalar(mins, group_format::meta_index(p.layout, g, h, r, gi), sd, stored_mn);
        for (std::int64_t j = j0; j < j0 + n; ++j) {
          const unsigned q = uniform_format::encode_value(in[g.block_offset(h, r, j)], scale, stored_mn, bits);
          group_format::put_code(p.layout, codes, g, bits, h, r, j, q);
        }
      }
    }
  }
}

void decode_reference(const UniformParams& p, const group_format::GroupGrid& g, const std::uint8_t* in, float* out) {
  const auto bits = static_cast<unsigned>(p.bits);
  const DType sd = p.scale_dtype;
  const auto sec = uniform_format::sections(p.layout, g, bits, sd, in);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const float scale = group_format::get_scalar(scales, group_format::meta_index(p.layout, g, h, r, gi), sd);
        const float mn = group_format::get_scalar(mins, group_format::meta_index(p.layout, g, h, r, gi), sd);
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        for (std::int64_t j = j0; j < j0 + n; ++j) {
          const unsigned q = group_format::get_code(p.layout, codes, g, bits, h, r, j);
          out[g.block_offset(h, r, j)] = uniform_format::decode_value(q, scale, mn);
        }
      }
    }
  }
}

}  // namespace uniform_kernels

uniform_cuda::Config uniform_cuda::config_of(const UniformParams& p) {
  return uniform_cuda::Config{static_cast<unsigned>(p.bits), p.group, p.axis, p.scale_dtype, p.layout};
}

#ifdef VIDKV_WITH_CUDA

void UniformQuantizer::encode_cuda(const TensorView& in, const BlockShape& shape, const TokenContext&, std::uint8_t* out,
                          const Execution& ex) const {
  uniform_cuda::encode(uniform_cuda::config_of(params_), in.data, in.dtype, shape, out, ex.cuda_stream, ex.after_independent_kernel);
}

void UniformQuantizer::decode_cuda(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, const TensorView& out,
                          const Execution& ex) const {
  uniform_cuda::decode(uniform_cuda::config_of(params_), in, shape, out.data, out.dtype, ex.cuda_stream,
                       ex.after_independent_kernel);
}
#endif

void register_uniform(PluginRegistry& registry) {
  registry.add<UniformQuantizer>("uniform", "asymmetric min/max b-bit quantization in groups of G (KIVI, VidKV 2-bit)");
}

}  // namespace vidkv
