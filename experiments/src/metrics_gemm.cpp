// The dense kernels of the optimised metric path (metrics_gemm.h), compiled twice: as part of vidkv_experiments
// for baseline x86-64 (namespace portable) and, from experiments/CMakeLists.txt, with -mavx2 -mfma and
// VIDKV_METRICS_GEMM_AVX2 (namespace avx2). Eigen picks its packet width at compile time, so each build gets its
// own GEMM; the macro below renames Eigen's namespace per build so the two sets of Eigen template instances never
// merge at link time (the same Eigen function compiled for AVX2 and for baseline would otherwise be one symbol).
// Nothing from the standard library that could be emitted out of line is used here for the same reason.
//
// Precision (the derivation of the tolerance is in tests/cpp/test_metrics.cpp):
//   - logits S = Q K^T and D = Q (K - K')^T are fp32 products of inner length dim (each entry within
//     gamma_dim ||q|| ||k|| of the exact value, gamma_n = n u / (1 - n u), u = 2^-24); D is computed from the
//     difference K - K' (rounded once) so the logit error ||s - s'|| does not come from a cancellation;
//   - softmax, KL and every sum in double: KL(p || p') = sum_j p_j (s_j - s'_j) - (lse(s) - lse(s')), the
//     reference's sum_j p_j (log p_j - log p'_j) written without a logarithm per key;
//   - outputs: the four products [P; P - P'] V and [P; P'] (V - V') (P, P - P', P' rounded to fp32 from double)
//     in fp32 over blocks of kKeyBlock keys, each block's result added in double, so a rounding error of the fp32
//     accumulation grows with the block (gamma_512), not with the context length. o - o' = (P - P') V + P' (V - V'),
//     o - o'_key_only = (P - P') V, o - o'_value_only = P (V - V'): every difference the metrics need is a product
//     of its own, never a difference of two nearly equal products.
#include "vidkv/experiments/src/metrics_gemm.h"

#include <cmath>

#if defined(VIDKV_METRICS_GEMM_AVX2)
#define Eigen vidkv_eigen_avx2
#define VIDKV_METRICS_GEMM_ISA avx2
#else
#define Eigen vidkv_eigen_portable
#define VIDKV_METRICS_GEMM_ISA portable
#endif
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

namespace vidkv::metrics_gemm::VIDKV_METRICS_GEMM_ISA {

namespace {

using Index = Eigen::Index;
using MatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapF = Eigen::Map<MatrixF>;
using ConstMapF = Eigen::Map<const MatrixF>;

// Keys per fp32 output product; the blocks' results are added in double.
constexpr Index kKeyBlock = 512;

// Per-thread buffers, kept between calls (a layer's heads have one shape, so they are allocated once).
struct Scratch {
  MatrixF dk, dv, a1, a2, block;
  MatrixD d1, d2;
  Eigen::ArrayXd s, ds, sh, e, eh;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

void attention(const AttentionProblem& pr, float* logits, float* logit_diff, AttentionRowSums* out, KeyNorms* norms) {
  const Index m_rows = pr.rows, n_keys = pr.keys, dim = pr.dim;
  Scratch& w = scratch();
  const ConstMapF k(pr.key, n_keys, dim), kh(pr.key_hat, n_keys, dim), q(pr.queries, m_rows, dim);
  MapF s_all(logits, m_rows, n_keys), d_all(logit_diff, m_rows, n_keys);
  w.dk.resize(n_keys, dim);
  w.dk = k - kh;
  s_all.noalias() = q * k.transpose();
  d_all.noalias() = q * w.dk.transpose();
  norms->key = std::sqrt(k.cast<double>().rowwise().squaredNorm().maxCoeff());
  norms->diff = std::sqrt(w.dk.cast<double>().rowwise().squaredNorm().maxCoeff());

  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(dim));
  if (pr.outputs) {
    w.a1.resize(2 * m_rows, n_keys);  // rows [0, M): P; [M, 2M): P - P'
    w.a2.resize(2 * m_rows, n_keys);  // rows [0, M): P; [M, 2M): P'
  }
  for (auto* a : {&w.s, &w.ds, &w.sh, &w.e, &w.eh}) a->resize(n_keys);
  for (Index i = 0; i < m_rows; ++i) {
    const Index n = pr.keys_seen[i];
    auto s = w.s.head(n), ds = w.ds.head(n), sh = w.sh.head(n), e = w.e.head(n), eh = w.eh.head(n);
    s = s_all.row(i).head(n).transpose().cast<double>().array() * inv_sqrt_d;
    ds = d_all.row(i).head(n).transpose().cast<double>().array() * inv_sqrt_d;
    sh = s - ds;
    AttentionRowSums& r = out[i];
    r = AttentionRowSums{};
    r.logit_r2 = s.square().sum();
    r.logit_d2 = ds.square().sum();
    const double mx = s.maxCoeff(), mxh = sh.maxCoeff();
    e = (s - mx).exp();
    eh = (sh - mxh).exp();
    const double z = e.sum(), zh = eh.sum();
    r.kl = (e * ds).sum() / z - ((mx + std::log(z)) - (mxh + std::log(zh)));
    if (pr.outputs) {
      e /= z;   // p
      eh /= zh; // p'
      w.a1.row(i).head(n) = e.cast<float>().transpose().matrix();
      w.a2.row(i).head(n) = w.a1.row(i).head(n);
      w.a1.row(m_rows + i).head(n) = (e - eh).cast<float>().transpose().matrix();
      w.a2.row(m_rows + i).head(n) = eh.cast<float>().transpose().matrix();
      for (Index row : {i, m_rows + i}) {
        w.a1.row(row).tail(n_keys - n).setZero();
        w.a2.row(row).tail(n_keys - n).setZero();
      }
    }
  }
  if (!pr.outputs) return;

  const ConstMapF v(pr.value, n_keys, dim), vh(pr.value_hat, n_keys, dim);
  w.dv.resize(n_keys, dim);
  w.dv = v - vh;
  w.d1.setZero(2 * m_rows, dim);
  w.d2.setZero(2 * m_rows, dim);
  for (Index b0 = 0; b0 < n_keys; b0 += kKeyBlock) {
    const Index nb = std::min(kKeyBlock, n_keys - b0);
    w.block.noalias() = w.a1.middleCols(b0, nb) * v.middleRows(b0, nb);
    w.d1 += w.block.cast<double>();
    w.block.noalias() = w.a2.middleCols(b0, nb) * w.dv.middleRows(b0, nb);
    w.d2 += w.block.cast<double>();
  }
  for (Index i = 0; i < m_rows; ++i) {
    AttentionRowSums& r = out[i];
    r.o_ref2 = w.d1.row(i).squaredNorm();                                // o = P V
    r.o_k2 = w.d1.row(m_rows + i).squaredNorm();                         // (P - P') V
    r.o_v2 = w.d2.row(i).squaredNorm();                                  // P (V - V')
    r.o_both2 = (w.d1.row(m_rows + i) + w.d2.row(m_rows + i)).squaredNorm();  // (P - P') V + P' (V - V')
  }
}

ErrorSumValues error_sums(const float* x, const float* y, std::int64_t n) {
  // 8 independent lanes per sum (vectorised by the compiler without reassociation), combined in lane order.
  constexpr int kLanes = 8;
  double r[kLanes] = {}, h[kLanes] = {}, d[kLanes] = {}, p[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double a = x[i + l], b = y[i + l];
      r[l] += a * a;
      h[l] += b * b;
      d[l] += (a - b) * (a - b);
      p[l] += a * b;
    }
  ErrorSumValues s;
  for (int l = 0; l < kLanes; ++l) {
    s.ref2 += r[l];
    s.hat2 += h[l];
    s.diff2 += d[l];
    s.dot += p[l];
  }
  for (; i < n; ++i) {
    const double a = x[i], b = y[i];
    s.ref2 += a * a;
    s.hat2 += b * b;
    s.diff2 += (a - b) * (a - b);
    s.dot += a * b;
  }
  return s;
}

}  // namespace vidkv::metrics_gemm::VIDKV_METRICS_GEMM_ISA
