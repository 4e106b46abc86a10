// The named tolerance of fused decode attention (the CUDA kernels and their CPU emulation) against the reference
// (decode_attention_reference.h), per output element; derivation below (docs/decode-attention.md repeats it).
//
// The general and fast kernels read the same decoded fp32 K/V elements as the reference (view_element performs each
// plugin decode's fp32 operations, and the kernels are compiled without FMA contraction), except for sign fft: real
// keys (see 4.); the tensor-core kernel multiplies the integer codes instead (5.). u = 2^-24.
// For one query row q of KV head h, tokens t = 1..T, channels D:
//  1. Scores. The kernel's s~_t = fl(sum_c q_c k_tc) (sequential fp32, D terms) times fl(log2(e) / sqrt(D)), minus
//     the running max m (fp32). |s~_t - s_t| (natural-log units, s_t = q . k_t / sqrt(D)) <= (D + 2) u S1_t for the
//     dot and the scale, S1_t = sum_c |q_c k_tc| / sqrt(D), plus u |s_t - m| <= 2 u S1 for the subtraction
//     (S1 = max_t S1_t): e_s = (D + 4) u S1 (first order).
//  2. Probabilities. exp2f is accurate to 2 ulp (CUDA programming guide, table of single-precision functions):
//     p~_t = p_t (1 + d_t), |d_t| <= e_p = e_s + 2 * 2u (+ the FFT term of 4.).
//  3. Sums. Numerator A = sum_t p~_t v_t and denominator L = sum_t p~_t are accumulated in fp32: per warp
//     sequentially over its tokens (<= T), rescaled by alpha once per tile (<= T rescales, each one rounding), then
//     merged over 4 warps and over the splits (<= T more additions): relative error <= 3 T u of sum_t p_t |v_t| for
//     A and of L for L. The output o = A / L (one more rounding) then satisfies
//       |o~_c - o_c| <= (2 e_p + 6 T u + u) max_t |v_tc| + 2 e_p max_t |v_tc|
//     (a relative perturbation d_t of each weight moves a convex combination by at most 2 max|d| max|v|; the
//     relative errors of A and L move it by their sum times max|v|). Total: (4 e_p + (6 T + 1) u) max_t |v_tc|.
//  4. sign fft: real key children. The reference decodes each token's stored components y with the library inverse
//     FFT (FFTW), within sign_fft_tolerance::inverse_bound(n, ||y||_2) per channel of the exact inverse; the kernel
//     takes sum_j w_j y_j with w the adjoint transform of the (gathered) query in fp32: each w_j is a sum of n terms
//     q_c B_jc with |B_jc| <= 2 / n, B rounded within 2u (cospif/sinpif 1 ulp + the product by 2/n), so
//     |w~_j - w_j| <= (n + 3) u (2 / n) sum_c |q_c|, and the dot with y adds n u sum_j |w_j y_j|
//     <= n u (2 / n) sum_c |q_c| sum_j |y_j|. Per token, in score units (/ sqrt(D)):
//       e_fft_t = [ sum_c |q_c| inverse_bound(n, ||y_t||_2) + (2n + 3) u (2 / n) sum_c |q_c| ||y_t||_1 ] / sqrt(D),
//     added to e_p (max over t).
//     sign fft: complex key children (2n stored components y_j, sign_fft.h): the same with the dot over 2n terms,
//     |B_jc| <= 1 / n (bounded by 2 / n above) and inverse_bound over the 2n components' ||y_t||_2 (sign_fft_tolerance.h
//     3.: the Hermitian part of the decoded spectrum has ||H||_2 <= sqrt(2) ||y||_2 for either kind): in general, for
//     m components, (n + 3 + m) u (2 / n) sum_c |q_c| ||y_t||_1 in place of (2n + 3) u (...).
//  5. Tensor cores (the tensor-core kernel, decode_attention_tensor_core.h; Arithmetic::tensor_cores). Each score is
//     s_t = sum_i x_i (c_ti - z) + sum_i q_i b_i with x_i = fl(q_i a_i) (one rounding) entering the MMA as bf16
//     hi + lo (|x_i - hi - lo| <= 2^-18 |x_i| = 64 u |x_i|); the MMA's products are exact, its fp32 accumulation is
//     not specified as round-to-nearest, so each of its additions is bounded as one directed rounding (2u): 2D terms
//     (hi and lo) plus the D bias FMAs, the bias add and the scale: |s~_t - s_t| <= ((6D + 8) u + 65 u) S1'_t with
//     S1'_t = sum_i |q_i| (|a_i (c_ti - z)| + |b_i|) / sqrt(D) <= 3 sum_i |q_i| M_i / sqrt(D), M_i = max_t |k_ti|
//     (|b| <= M: a uniform group's min is the decode of code 0, which its smallest element gets; sign b is 0 or -s;
//     and |a (c - z)| <= |k| + |b|). The FFT children's dot sum_j w_j y_j the same way: (2n + 3) u of 4. becomes
//     (n + 3) u + 3 (6n + 73) u (|a c| + |b| <= 3 |y|). The values: the weights p (or p a_tg) enter as hi + lo
//     (2^-16 more in the convex-combination term) and the tile sums sum_t p_t (c_tc - z) accumulate over at most
//     2 T products and 400 further roundings, each 2u, of sum_t p_t (|a (c - z)| + |b|) <= 3 V L, V = max |v| over
//     the KV head: (4 e_p + 2^-16 + (6T + 1) u + 3 (4T + 400) u) V per output element.
//  6. Fragment (the fragment kernel, decode_attention_fragment.h; Arithmetic::fragment). Each score is
//     s_t = 2^e c [sum_i x_i c_ti + sum_i y_i] with c = fl(log2(e) / sqrt(D)), q''_i = fp16(q_i / 2^e) (|q''| <= 1,
//     2^e <= 2 max_i |q_i|; exact for fp16 and bf16 queries in fp16's normal range), x_i = fp16(q''_i a_i) (hmul2:
//     one rounding of the exact product), y_i = q''_i b_i (exact since 2026-12-05: the product of two fp16 inside an
//     MMA; the bound below still charges it x_i's rounding, so it is conservative there), |fp16(z) - z| <= 2^-11 |z| + 2^-25 (2^-25:
//     half the spacing of fp16's subnormals). So x_i c_ti + y_i is within (2^-10 + 2^-22) |q_i / 2^e| (|a_i c_ti| +
//     |b_i|) + 2^-25 (1 + 2^-11) (|a_i c_ti| + |b_i|) (q'' subnormal, rounded once more in the product) + 4 2^-25 (the
//     products subnormal) of q_i / 2^e (a_i c_ti +
//     b_i). In natural-log units, with |a c| + |b| <= |k| + 2 M_i (|b_i| <= M_i, |a c| <= |k| + |b|), the token's
//     S1'_t = sum_i |q_i| (|k_ti| + 2 M_i) / sqrt(D), and the MMAs' fp32 accumulation (2 D products, D / 16 bias
//     chunks), the fp32 scalings and exp2 (ex2.approx.ftz, exp2f's instruction: 2 ulp; results below 2^-126 flush
//     to zero, an absolute change under fp16(p~)'s 2^-25 in the values and under u of L >= 1 in the sum):
//       e_t = (2^-10 + 2^-22 + (8 D + 40) u) S1'_t + 2^-24 (1 + 2^-11) max_i |q_i| sum_i (|k_ti| + 2 M_i) / sqrt(D)
//             + 2^-22 sqrt(D) max_i |q_i| + 4 u (+ the FFT term, 0 for these formats).
//     Single fp16 factors make e_t about twenty times 5.'s, so instead of 5.'s worst case (4 e_p max |v|) the bound
//     takes the softmax's first-order sensitivity itself: perturbing score t by d_t moves o_c by
//     sum_t (p_t / L) d_t (v_tc - o_c), with p_t, L and o_c of the exact attention over the decoded K/V. The values'
//     factors fp16(p~_t a_tg) and p~_t b_tg (exact since 2026-12-05, an MMA of A = the mins and B = p~; charged the
//     same rounding below) with p~_t = fp16(p_t) (p <= 1) add (2^-10 + 2^-22) (|a c| + |b|) <=
//     (2^-10 + 2^-22) (|v_tc| + 2 W_t) per token (W_t = max_c |v_tc|) relative to p_t, 2^-25 (|v_tc| + 2 W_t)
//     absolute where p_t is below fp16's normal range (whatever its weight), and at most 4 2^-25 = 2^-23 each
//     (the products subnormal; L >= 1: the largest score's weight is 1). Per output element, with 5.'s accumulation
//     (the mins' terms are MMAs into one accumulator per group, added once; the vidkv instance's trits as slots t + 1
//     <= 2 whose sums, at most 2 L V, are added beside the probabilities' own sum L V and the latter subtracted after
//     the last tile: the term's 3 V L covers both; the codes as fp16 subnormals: the paragraph after the formula) and
//     E = max_t e_t: the scores' term exactly (not first
//     order: |e^d - 1| <= |d| (e^E - 1) / E, the moved denominator >= L e^-E) and the factors' under the moved weights:
//       e^E (e^E - 1) / E sum_t (p_t / L) e_t |v_tc - o_c| + e^2E sum_t [(p_t / L) (2^-10 + 2^-22) + 2^-25]
//       (|v_tc| + 2 W_t) + ((6 T + 1) + 3 (4 T + 400)) u V + T 2^-23.
//     The codes enter the MMAs as fp16 subnormals (code 2^(s - 24), decode_attention_fragment.h subnormal_code_pair),
//     and the tensor cores do not sum those products as they sum normal ones: measured on an H100 (2026-12-06, the
//     [cuda] test of attention_cuda::fragment_operand_check, random operands, the codes then at s = 0 and 2 (2-bit),
//     0 and 1 (1-bit)), 21,169 of 24,576 2-bit and 41,881 of 49,152 1-bit MMA outputs differed from those of the same
//     codes as fp16 integers, by up to about 2^-15 relative in the cases printed. The model taken (that test checks
//     its bound, per row's s; on an H100 with the codes at s >= 4, 2026-12-06: 14,990 of 24,576 2-bit and 7,045 of
//     49,152 1-bit outputs differed, largest difference / bound 0.0077 and 0.0023): each product is aligned by the
//     exponent fields of its inputs, a subnormal taken at 2^-14 (its true leading bit 2^(10 - s) or less lower), and
//     the aligned terms of one MMA keep 24 bits below the largest, so each of its 16 products and C loses at most 2^-23
//     of the largest nominal term, 2^-13 |B| at most (|B| at least fp16's 2^-14): per MMA, in the codes' units (times
//     row_unscale = 2^(24 - s)), at most 17 2^-12 2^-s max(max |B|, 2^-14), taken as 17 2^-11 2^-s (a factor 2 of
//     margin for the window's convention, which the measurement does not pin down; it also covers (1 + 2^-11)^2 against
//     1 + 2^-10 below). The kernels place the codes near the top of the subnormal range (s >= 4: 2-bit rows at 4 and 6,
//     1-bit at 8 and 9, attention_fragment::subnormal_row_shift), and the bound takes the lowest, 2^-s = 2^-4:
//     A = 17 2^-15. Scores: D / 16 such MMAs per token with |B| = |x_i| <= |q_i| 2 M_i / 2^e, so e_t gains (D / 16) A
//     max(max_i |q_i| 2 M_i, 2^-13 max |q|) / sqrt(D) (the part indices' max |tq_i| 2 M_i for the vidkv instance,
//     FragmentScoreTerms::peak). Values: each token is in one 16-token MMA per channel, whose largest |B| is at most
//     the sum of its |B| = p~_t |a_tg| <= (1 + 2^-11)^2 p_t 2 W_t (the vidkv instance: p~_t against the slots, so
//     max(2 W_t, 1)), so the factors' sum gains (1 + 2^-10) A (p_t / L) b_t per token (under the moved weights, as the
//     factors), and the 2^-14 floor adds (T / 16 + 2) A 2^-14 (a cut tile's masked half is an MMA too).
//     On the [cpu] emulations' data this term makes 6. about 1.4-fold (kivi) and 1.6-fold (vidkv) looser than
//     without it (largest error / bound 0.0041 -> 0.0029 and 0.0026 -> 0.0017; with the codes at s = 0, the first
//     version, 6-fold and 14-fold: 0.0007 and 0.00019).
//     Only as tight as the data: the tests' largest error is 0.2-1.4% of it (the [cpu] emulations 0.0017-0.0029, the
//     [cuda] tests 0.0141 on an H100), and a wrong code in one tile of small weight moves the output by less than
//     that, so the [cuda] tests rely on the [cpu] tests of the register map, the field trick and fragment_tile as well.
// The bound of 1.-5. is first order (second-order terms are below 1% of it for T u < 0.01, which every tested T meets) and
// loose by design: a bug (a wrong code, a wrong group, a missed token) moves the output by a whole quantization
// step, orders of magnitude above it (for 6., see its last sentence).
#pragma once

#include <cstdint>
#include <vector>

#include "vidkv/core/cache_lifecycle.h"

namespace vidkv::decode_attention_tolerance {

constexpr double kU = 0x1p-24;

// Which arithmetic produced the result: fp32 FMAs on decoded elements (the general and fast kernels, the emulation),
// the tensor-core kernel's MMAs on the integer codes with bf16 hi + lo factors (5.), or the fragment kernel's with
// single fp16 factors (6.).
enum class Arithmetic { cuda_cores, tensor_cores, fragment };

// e_fft of 4. for each token of KV head h of a cpu or cuda cache and the query row q ([D] fp32), maximised over
// tokens: 0 when the key side has no sign child with an FFT (real or complex). tensor_cores: the dot's coefficient (n + 3) + 3 (6n + 73)
// instead of 2n + 3 (5.).
double fft_score_error(const LayerCache& cache, std::int64_t h, const float* q,
                       Arithmetic arithmetic = Arithmetic::cuda_cores);

// 6. for keys that the fragment kernel reads in their blocks' coordinates (its vidkv instance, attention_fragment::
// FragmentFormats::vidkv: the query carried into each key block, Problem::transformed): the same rounding terms with
// the part indices i of the block (W = key_width: the gathered high channels, the low channels' FFT components) in
// place of the channels, the transformed query tq_i (transform_entry) in place of q_i and the part elements y_ti
// (part_element: what the MMAs multiply, a c + b per index) in place of k_ti: per token of a key block mag_t =
// sum_i |tq_i| (|y_ti| + 2 M_i) and sizes_t = sum_i (|y_ti| + 2 M_i), M_i = max over the block's tokens of |y_ti|
// (|b_i| <= M_i, |a_i c_ti| <= |y_ti| + M_i as in 6.), and qmax = max |tq_i| over every block (the kernel's 2^e is
// per block: the largest is the conservative one). Tokens outside key blocks (the residual window: exact keys, read
// by the tensor-core residual kernel as fp16 against q'' or by the general kernel in fp32) keep 6.'s terms over the
// channels. The transform's own rounding (fp32, the transform kernel) is the FFT term of 4. (`extra`). peak_t =
// max_i |tq_i| 2 M_i over the part indices of token t's block (6.'s alignment term). Empty (no tokens) where the
// cache's keys need no transform. value_slots: whether the values are the vidkv instance's (attention_fragment::
// vidkv_values_ok: ternary packing fragment, magnitude-free), whose MMAs take p~ itself
// against the slots t + 1, so that 6.'s values' alignment term takes max(2 W_t, 1) where kivi's takes 2 W_t.
struct FragmentScoreTerms {
  std::vector<double> mag, sizes, peak;  // [T]: the terms above for tokens in key blocks
  std::vector<char> in_block;            // [T]: whether token t is in a key block
  double qmax = 0.0;
  bool value_slots = false;
};
FragmentScoreTerms fragment_score_terms(const LayerCache& cache, std::int64_t h, const float* q);

// The per-channel bound of 1.-3. for query row q over decoded K/V [T, D] (decoded_head()), with `extra` (the
// FFT term of 4.) added to e_p. Returns [D]. tensor_cores: the bound of 5., one value for every channel (V the max
// over the head); fragment: the bound of 6., per channel. Both also cover the residual tiles, which the general
// kernel computes within the smaller 1.-3. (and, for a fragment problem with fp16 stores, the tensor-core residual
// kernel with 6.'s own arithmetic: decode_attention_fragment.cu fragment_residual_kernel). fragment with `terms`
// (fragment_score_terms, non-empty): the keys' rounding terms of its key-block tokens over the part indices.
std::vector<double> output_tolerance(const float* q, const std::vector<double>& key, const std::vector<double>& value,
                                     std::int64_t tokens, std::int64_t channels, double extra,
                                     Arithmetic arithmetic = Arithmetic::cuda_cores,
                                     const FragmentScoreTerms* terms = nullptr);

}  // namespace vidkv::decode_attention_tolerance
