// sign: AVX-512 channel-axis FFT of the optimised CPU path for power-of-two lengths n = 16 .. 128 (kinds real and
// complex), 16 tokens at a time in the 16 lanes of zmm registers. Same contract as fft_forward_rows /
// fft_inverse_rows (sign_fft.h: component orders, forward unnormalised, inverse divided by n keeping Re), but NOT
// the same bits as FFTW: the sums are made in another order. The error bound against the exact transform and its
// derivation: sign_fft_avx512.cpp; tested in tests/cpp/test_sign_fft_avx512.cpp. The scalar reference keeps FFTW.
#pragma once

#include <cstdint>

#include "vidkv/plugins/quantizers/sign/sign_fft.h"

namespace vidkv {

// True when the AVX-512 kernels are compiled in and usable (simd::avx512_kernels()), kind != off and n is a
// power of two in [kFftAvx512MinN, kFftAvx512MaxN].
constexpr std::int64_t kFftAvx512MinN = 16;
constexpr std::int64_t kFftAvx512MaxN = 128;
bool fft_avx512_applies(SignFft kind, std::int64_t n);

// As fft_forward_rows / fft_inverse_rows; only where fft_avx512_applies(kind, n). Any rows >= 0.
void fft_forward_rows_avx512(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out);
void fft_inverse_rows_avx512(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out);

// Relative bound of the transforms above against the exact DFT (derivation: sign_fft_avx512.cpp), per output
// component: forward |X^ - X| <= fft_avx512_error_factor(n) * u * sum_j |x_j| (the row's input);
// inverse |x^ - x| <= fft_avx512_error_factor(n) * u * (2 / n) * sum |Y| over the row's stored bins (complex: all
// n bins; real: bins 0 .. n/2, each once); u = 2^-24.
double fft_avx512_error_factor(std::int64_t n);

}  // namespace vidkv
