// sign: where each FFT component (sign_fft.h's orders) lives in the half spectrum of a real-to-complex transform,
// and the half spectrum a complex-to-real transform needs to decode them. The CUDA path of sign.cu runs cuFFT's
// R2C / C2R (bins 0 .. n/2 of each token, n/2 + 1 complex values) and reads / writes the components straight from
// / into those buffers with these maps, so no reorder pass is needed. C++17, host and device.
//
// Forward (component c of a token whose R2C output is X_0 .. X_{n/2}):
//   real:    c = 0 -> Re X0;  c odd -> Re X_{(c+1)/2};  c even > 0 -> Im X_{c/2}   (n even: c = n-1 is Re X_{n/2})
//   complex: c = 2k + part, k < n: X_k for k <= n/2, conj X_{n-k} otherwise (the input is real: X_{n-k} = conj X_k,
//            which is also what FFTW's full c2c transform approximates; both within their bounds of it).
// Inverse (the C2R input H_k, k = 0 .. n/2, from decoded components y, times `scale`):
//   real:    H_0 = y0, H_k = (y_{2k-1}, y_{2k}) (imaginary part 0 where 2k = n) — the stored bins themselves;
//   complex: H_k = (Y_k + conj Y_{n-k}) / 2 (Y_n = Y_0), the Hermitian part of the decoded spectrum Y_k =
//            (y_{2k}, y_{2k+1}): the real part of the inverse of Y (the reference's decode) is the C2R of H.
//   The imaginary parts of H_0 and H_{n/2} (n even) are set to 0 (a C2R transform ignores them).
#pragma once

#include <cstdint>

#include "vidkv/core/host_device.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"

namespace vidkv::sign_fft_bins {

// Complex bins of a real transform of n points: n / 2 + 1.
VIDKV_HOST_DEVICE constexpr std::int64_t half_bins(std::int64_t n) { return n / 2 + 1; }

// Where component c lives: value = imag ? sign * Im X_bin : Re X_bin.
struct BinRef {
  std::int64_t bin;
  bool imag;
  float sign;  // -1 for the conjugated upper half of the complex kind's imaginary parts
};

VIDKV_HOST_DEVICE constexpr BinRef component_bin(SignFft kind, std::int64_t n, std::int64_t c) {
  if (kind == SignFft::complex) {
    const std::int64_t k = c / 2;
    const bool imag = (c & 1) != 0;
    if (k <= n / 2) return BinRef{k, imag, 1.0f};
    return BinRef{n - k, imag, -1.0f};
  }
  if (c == 0) return BinRef{0, false, 1.0f};
  if (c & 1) return BinRef{(c + 1) / 2, false, 1.0f};
  return BinRef{c / 2, true, 1.0f};
}

// Component c from a token's half spectrum stored as interleaved (re, im) floats.
VIDKV_HOST_DEVICE inline float component(SignFft kind, std::int64_t n, const float* half_spectrum, std::int64_t c) {
  const BinRef b = component_bin(kind, n, c);
  const float v = half_spectrum[2 * b.bin + (b.imag ? 1 : 0)];
  return b.imag ? b.sign * v : v;  // sign * v: exact (+-1), -1 * 0 = -0 as conj gives
}

struct Bin {
  float re, im;
};

// H_k (k <= n/2) times `scale`, from y(c) = decoded component c. Rounding: complex: (a + b) rounded, then one
// product by 0.5 * scale (exact power-of-two factor folded into the scale); real: one product by scale.
template <class Y>
VIDKV_HOST_DEVICE inline Bin inverse_bin(SignFft kind, std::int64_t n, std::int64_t k, float scale, Y y) {
  if (kind == SignFft::complex) {
    if (k == 0) return Bin{y(0) * scale, 0.0f};
    const float h = 0.5f * scale;
    const float re = (y(2 * k) + y(2 * (n - k))) * h;
    const float im = 2 * k == n ? 0.0f : (y(2 * k + 1) - y(2 * (n - k) + 1)) * h;
    return Bin{re, im};
  }
  if (k == 0) return Bin{y(0) * scale, 0.0f};
  return Bin{y(2 * k - 1) * scale, 2 * k < n ? y(2 * k) * scale : 0.0f};
}

}  // namespace vidkv::sign_fft_bins
