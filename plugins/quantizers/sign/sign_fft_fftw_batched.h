// sign: the channel-axis FFT through FFTW's batched plans (fftwf_plan_many_dft_r2c / _c2r over a chunk of
// kFftwBatchRows token rows, 64-byte aligned fftwf_malloc buffers, plans cached per thread). Same contract as
// fft_forward_rows / fft_inverse_rows (sign_fft.h: component orders, forward unnormalised, inverse divided by n
// keeping Re), any n >= 1, any rows >= 0; NOT necessarily the same bits as the per-row reference plans (a batched
// plan may pick other codelets, sums in another order).
//
// Both kinds use the real transforms: the input rows are real, so the complex kind's forward spectrum is the r2c
// half-spectrum completed by X_{n-k} = conj(X_k) (exact copies), and Re of the complex inverse of a (generally
// non-Hermitian) spectrum Y is the c2r inverse of its Hermitian part H_k = (Y_k + conj(Y_{n-k})) / 2, k <= n/2.
//
// Error bound: sign_fft_tolerance.h applies unchanged. Its model is FFTW's (Cooley-Tukey with codelets, the
// r2c / c2r split stage counted as eta(2)), which does not depend on how many transforms a plan performs; the
// inverse bound already counts the Hermitian pre-step (one add, one exact halving) and the product by 1/n (3u).
// Checked against the exact DFT in tests/cpp/test_sign_fft_fftw_batched.cpp.
#pragma once

#include <cstdint>

#include "vidkv/plugins/quantizers/sign/sign_fft.h"

namespace vidkv {

// Token rows per batched plan execution (the last chunk of a call may be shorter: a plan of its own).
constexpr std::int64_t kFftwBatchRows = 64;

void fft_forward_rows_fftw_batched(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out);
void fft_inverse_rows_fftw_batched(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out);

}  // namespace vidkv
