#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_avx512.h"

#include <vector>

#include "vidkv/quantization/simd/avx512_support.h"
#include "vidkv/quantization/simd/cpu_features.h"

namespace vidkv::mixed_channel_avx512 {

#if defined(VIDKV_HAVE_AVX512_KERNELS) && defined(__AVX512F__)

namespace {

// Per 16-channel chunk of a row: the high-channel lanes and the valid lanes.
struct Chunks {
  std::vector<__mmask16> high, valid;
  explicit Chunks(std::int64_t channels, const std::uint8_t* is_high) {
    for (std::int64_t c0 = 0; c0 < channels; c0 += 16) {
      const std::int64_t n = channels - c0 < 16 ? channels - c0 : 16;
      unsigned m = 0;
      for (std::int64_t k = 0; k < n; ++k) m |= (is_high[c0 + k] ? 1u : 0u) << k;
      high.push_back(static_cast<__mmask16>(m));
      valid.push_back(simd::first_lanes(n));
    }
  }
};

// x, kept in a register: GCC folds a load into vexpandps / vcompressps with a memory operand, which Intel cores
// run as a slow microcoded sequence; the register forms are a couple of uops.
inline __m512 in_register(__m512 x) {
  asm("" : "+v"(x));
  return x;
}

}  // namespace

bool available() { return simd::avx512_kernels(); }

void gather(const float* in, std::int64_t rows, std::int64_t channels, const std::uint8_t* is_high, float* hi_out,
            float* lo_out) {
  const Chunks chunks(channels, is_high);
  const auto count = static_cast<std::int64_t>(chunks.high.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * channels;
    for (std::int64_t k = 0; k < count; ++k) {
      const __mmask16 valid = chunks.valid[k], high = chunks.high[k];
      const __m512 x = in_register(_mm512_maskz_loadu_ps(valid, row + 16 * k));
      _mm512_storeu_ps(hi_out, _mm512_maskz_compress_ps(high, x));
      _mm512_storeu_ps(lo_out, _mm512_maskz_compress_ps(static_cast<__mmask16>(valid & ~high), x));
      hi_out += __builtin_popcount(high);
      lo_out += __builtin_popcount(valid & ~high);
    }
  }
}

namespace {

template <bool Stream>
void scatter_rows(const float* hi_in, const float* lo_in, std::int64_t rows, std::int64_t channels,
                  const std::uint8_t* is_high, float* out) {
  const Chunks chunks(channels, is_high);
  const auto count = static_cast<std::int64_t>(chunks.high.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = out + r * channels;
    for (std::int64_t k = 0; k < count; ++k) {
      const __mmask16 valid = chunks.valid[k], high = chunks.high[k], low = static_cast<__mmask16>(valid & ~high);
      const __m512 h = _mm512_maskz_expand_ps(high, in_register(_mm512_loadu_ps(hi_in)));
      const __m512 x = _mm512_mask_expand_ps(h, low, in_register(_mm512_loadu_ps(lo_in)));
      simd::store16<Stream>(row + 16 * k, valid, x);
      hi_in += __builtin_popcount(high);
      lo_in += __builtin_popcount(low);
    }
  }
}

}  // namespace

void scatter(const float* hi_in, const float* lo_in, std::int64_t rows, std::int64_t channels,
             const std::uint8_t* is_high, float* out) {
  if (!simd::stream_output(out, rows * channels, channels)) return scatter_rows<false>(hi_in, lo_in, rows, channels, is_high, out);
  scatter_rows<true>(hi_in, lo_in, rows, channels, is_high, out);
  simd::finish_stores();
}

#else

bool available() { return false; }
void gather(const float*, std::int64_t, std::int64_t, const std::uint8_t*, float*, float*) {}
void scatter(const float*, const float*, std::int64_t, std::int64_t, const std::uint8_t*, float*) {}

#endif

}  // namespace vidkv::mixed_channel_avx512
