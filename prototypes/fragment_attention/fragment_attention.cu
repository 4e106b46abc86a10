// Design prototype for issue 13 (decode attention from the packed bits), outside VidKV's library and paths: what a
// code layout in the order of the tensor cores' operand fragments would give over today's (docs/performance.md,
// section 8, "A fragment-native layout, measured in a prototype"). Standalone: its own quantizer, packer and check;
// nothing here is read by `vidkv` or by VidKVCache.
//
// The cache is kivi-2-shaped: 2-bit keys per channel in groups of 32 tokens, 2-bit values per token in groups of 32
// channels, an fp16 scale and min per group (3.0 bits per element, the bytes of kivi-2's packed blocks). Its code
// bits are permuted so that lane l of a warp finds, in its own 16 words of a 64-token tile (four 16-byte loads per
// side), exactly the codes of its A fragments of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16": a0 row
// l/4, columns 2 (l%4) and +1; a1 row + 8; a2, a3 columns + 8): keys as A = codes [16 tokens x 16 channels] against
// B = fp16(scale x q) [16 channels x 8 query heads]; values as A = codes [16 channels x 16 tokens] against
// B = fp16(P x scale). Field j of a word holds one register's two codes at bits 2j' and 16 + 2j' (j' = j for j < 5,
// j - 5 of the word shifted right by 10 otherwise), so one lop3 ORs in the fp16 exponent that makes bit 2j' the
// unit place and one hsub2 leaves the codes as exact fp16 integers. The mins enter through an MMA with an all-ones
// A (sum_c min_c q_c per key group, sum_t P_t min_t per value group). Online softmax in fp32 (exp2, scores pre-scaled
// by log2 e / sqrt(D)); each warp takes a run of tiles (split-K) with the next tile copied to shared memory by
// cp.async during the current one; a second kernel merges the splits.
//
// Accuracy: the MMA factors are single fp16 terms (relative rounding 2^-11 each, as fp16 SDPA rounds P before its
// own product), not the hi + lo bf16 pairs of VidKV's kernel (decode_attention_tolerance.h): the check prints the
// largest |error| against a double-precision attention over the dequantized cache (7.6e-4 at 64k tokens and 1.6e-3
// at 32k on an H200: 6e-4 and 1.3e-3 of the largest sum_t p_t |v_t| / l, about 1.2, the magnitude of what the softmax
// averages and the scale of the factors' rounding; the largest |o| was about 0.45-0.49).
//
// Build and run on a GPU (sm_80 or newer; the project's CUDA build also builds it as
// vidkv_fragment_attention_prototype):
//   nvcc -O3 -arch=sm_90 -std=c++17 fragment_attention.cu -o fa && ./fa BATCH TOKENS TILES_PER_SPLIT
// e.g. ./fa 8 65536 32; sdpa_baseline.py times torch's fp16 SDPA on the same shapes.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CK(x)                                                                                  \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

constexpr int D = 128, QPK = 7, TILE = 64, WARPS = 4;
// Per 64-token tile of one (sequence, KV head): key codes 16 words x 32 lanes, value codes the same, key scale / min
// [2 groups][4 t4][8 kc][2 pairs] half2 (channels kc*16 + 2 t4 (+1), + 8 (+9)), value scale / min
// [4 t4][4 kc][2 pairs][4 gc] half2 (tokens kc*16 + 2 t4 (+1), + 8 (+9)).
constexpr int kCodeWords = 16 * 32;        // per side
constexpr int kKeyMetaHalf2 = 2 * 4 * 8 * 2;  // 128 half2 = 512 B each for s and m
constexpr int kValMetaHalf2 = 4 * 4 * 2 * 4;  // 128 half2
constexpr int kTileWords = 2 * kCodeWords + 2 * kKeyMetaHalf2 + 2 * kValMetaHalf2;  // 4 KB codes + 2 KB meta

// Field j (0..7) of a word: bits 2j' and 16 + 2j' (j' = j < 5 ? j : j - 5, of w >> 10 when j >= 5); the fp16 whose
// mantissa bit 2j' is its unit: exponent 10 - 2j'.
__host__ __device__ constexpr int field_shift(int j) { return j < 5 ? 2 * j : 2 * (j - 5); }
__host__ __device__ constexpr unsigned field_magic(int j) { return (unsigned)(25 - field_shift(j)) << 10; }

__device__ __forceinline__ unsigned codes_h2(unsigned w, unsigned w10, int j) {
  const unsigned src = j < 5 ? w : w10;
  const unsigned mask = 0x00030003u << field_shift(j);
  const unsigned magic = field_magic(j) * 0x00010001u;
  const unsigned biased = (src & mask) | magic;
  __half2 h = *reinterpret_cast<const __half2*>(&biased);
  const __half2 off = *reinterpret_cast<const __half2*>(&magic);
  h = __hsub2(h, off);
  return *reinterpret_cast<unsigned*>(&h);
}

__device__ __forceinline__ void mma16816(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                         unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ unsigned h2u(__half2 h) { return *reinterpret_cast<unsigned*>(&h); }
__device__ __forceinline__ __half2 u2h(unsigned u) { return *reinterpret_cast<__half2*>(&u); }
constexpr unsigned kOnes = 0x3C003C00u;  // fp16 pair (1, 1)

// q: [seqs][8][D] fp32, pre-scaled by softmax scale * log2(e) (row 7 zero). cache: [seqs][tiles][kTileWords].
// part: [seqs][splits][8][D + 2] (o unnormalised, m, l).
__global__ void __launch_bounds__(WARPS * 32, 3)
    attend(const float* __restrict__ q, const unsigned* __restrict__ cache, int tiles, int tiles_per_split, int splits,
           float* __restrict__ part) {
  __shared__ __align__(16) float p_s[WARPS][8][TILE];  // read as float2
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  extern __shared__ uint4 tbuf[];  // [WARPS][2][kTileWords / 4]: the warp's current and next tile
  uint4* mybuf = tbuf + warp * 2 * (kTileWords / 4);
  const int split = blockIdx.x * WARPS + warp, seq = blockIdx.y;
  if (split >= splits) return;
  const int tile0 = split * tiles_per_split, tile1 = min(tiles, tile0 + tiles_per_split);
  // The lane's query (head g) at channels kc*16 + 2 t4 (+1) and + 8 (+9), as fp16 pairs.
  unsigned qh[8][2];
  const float* qg = q + ((size_t)seq * 8 + g) * D;
#pragma unroll
  for (int kc = 0; kc < 8; ++kc)
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      const int c = kc * 16 + 2 * t4 + 8 * p;
      qh[kc][p] = h2u(__floats2half2_rn(qg[c], qg[c + 1]));
    }
  float acc[8][4];  // O^T: channel mv*16 + g (+8), heads 2 t4 (+1)
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int k = 0; k < 4; ++k) acc[i][k] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  float* ps = &p_s[warp][0][0];

  auto issue = [&](int tile, int slot) {
    if (tile < tile1) {
      const uint4* src = reinterpret_cast<const uint4*>(cache + ((size_t)seq * tiles + tile) * kTileWords);
      uint4* dst = mybuf + slot * (kTileWords / 4);
#pragma unroll
      for (int i = 0; i < kTileWords / 4 / 32; ++i) {
        const unsigned sa = (unsigned)__cvta_generic_to_shared(dst + i * 32 + lane);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(src + i * 32 + lane));
      }
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };
  issue(tile0, 0);
  for (int tile = tile0; tile < tile1; ++tile) {
    issue(tile + 1, (tile - tile0 + 1) & 1);
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    __syncwarp();
    const unsigned* tb = reinterpret_cast<const unsigned*>(mybuf + ((tile - tile0) & 1) * (kTileWords / 4));
    const uint4* kw4 = reinterpret_cast<const uint4*>(tb);
    const uint4* vw4 = reinterpret_cast<const uint4*>(tb + kCodeWords);
    const uint4* km4 = reinterpret_cast<const uint4*>(tb + 2 * kCodeWords);  // [s|m][grp][t4][kc][pair]
    const uint4* vm4 = reinterpret_cast<const uint4*>(tb + 2 * kCodeWords + 2 * kKeyMetaHalf2);  // [s|m][t4][kc][pair][gc]
    unsigned kw[16];
#pragma unroll
    for (int qd = 0; qd < 4; ++qd) {
      const uint4 v = kw4[qd * 32 + lane];
      kw[qd * 4 + 0] = v.x; kw[qd * 4 + 1] = v.y; kw[qd * 4 + 2] = v.z; kw[qd * 4 + 3] = v.w;
    }
    // Scores: s[mt][4] (tokens mt*16 + g (+8), heads 2 t4 (+1)).
    float s[4][4];
#pragma unroll
    for (int grp = 0; grp < 2; ++grp) {
      unsigned ksc[16], kmn[16];  // [kc][pair] half2
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint4 a = km4[((0 * 2 + grp) * 4 + t4) * 4 + i];
        const uint4 b = km4[((1 * 2 + grp) * 4 + t4) * 4 + i];
        ksc[4 * i] = a.x; ksc[4 * i + 1] = a.y; ksc[4 * i + 2] = a.z; ksc[4 * i + 3] = a.w;
        kmn[4 * i] = b.x; kmn[4 * i + 1] = b.y; kmn[4 * i + 2] = b.z; kmn[4 * i + 3] = b.w;
      }
      unsigned bs[8][2], bm[8][2];
#pragma unroll
      for (int kc = 0; kc < 8; ++kc)
#pragma unroll
        for (int p = 0; p < 2; ++p) {
          bs[kc][p] = h2u(__hmul2(u2h(ksc[kc * 2 + p]), u2h(qh[kc][p])));
          bm[kc][p] = h2u(__hmul2(u2h(kmn[kc * 2 + p]), u2h(qh[kc][p])));
        }
      float bias[4] = {0.f, 0.f, 0.f, 0.f};  // sum_c m_c q_c: every row the same
#pragma unroll
      for (int kc = 0; kc < 8; ++kc) mma16816(bias, kOnes, kOnes, kOnes, kOnes, bm[kc][0], bm[kc][1]);
#pragma unroll
      for (int mh = 0; mh < 2; ++mh) {
        const int mt = grp * 2 + mh;
        float (&d)[4] = s[mt];
        d[0] = bias[0]; d[1] = bias[1]; d[2] = bias[2]; d[3] = bias[3];
#pragma unroll
        for (int kc = 0; kc < 8; ++kc) {
          // register (mt, kc, a): word mt*4 + (a & 1)*2 + (kc >> 2), field (kc & 3)*2 + (a >> 1)
          const unsigned w0 = kw[mt * 4 + 0 + (kc >> 2)], w1 = kw[mt * 4 + 2 + (kc >> 2)];
          const unsigned w0s = w0 >> 10, w1s = w1 >> 10;
          const int j0 = (kc & 3) * 2, j1 = j0 + 1;
          mma16816(d, codes_h2(w0, w0s, j0), codes_h2(w1, w1s, j0), codes_h2(w0, w0s, j1), codes_h2(w1, w1s, j1),
                   bs[kc][0], bs[kc][1]);
        }
      }
    }
    // Online softmax per head (2 t4, 2 t4 + 1) over the tile's 64 tokens (8 per lane and head).
    float mx[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v = fmaxf(fmaxf(s[0][h], s[0][h + 2]), fmaxf(s[1][h], s[1][h + 2]));
      v = fmaxf(v, fmaxf(fmaxf(s[2][h], s[2][h + 2]), fmaxf(s[3][h], s[3][h + 2])));
      v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 4));
      v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 8));
      v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 16));
      mx[h] = fmaxf(m_run[h], v);
    }
    float alpha[2], sum[2] = {0.f, 0.f};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      alpha[h] = exp2f(m_run[h] - mx[h]);
      m_run[h] = mx[h];
    }
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float p = exp2f(s[mt][k] - mx[k & 1]);
        s[mt][k] = p;
        sum[k & 1] += p;
        ps[(2 * t4 + (k & 1)) * TILE + mt * 16 + g + 8 * (k >> 1)] = p;
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v = sum[h];
      v += __shfl_xor_sync(0xffffffffu, v, 4);
      v += __shfl_xor_sync(0xffffffffu, v, 8);
      v += __shfl_xor_sync(0xffffffffu, v, 16);
      l_run[h] = l_run[h] * alpha[h] + v;
    }
    if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        acc[i][0] *= alpha[0]; acc[i][1] *= alpha[1]; acc[i][2] *= alpha[0]; acc[i][3] *= alpha[1];
      }
    }
    __syncwarp();
    // P^T in the B layout: head g, tokens kc*16 + 2 t4 (+1), + 8 (+9).
    float2 pp[4][2];
#pragma unroll
    for (int kc = 0; kc < 4; ++kc)
#pragma unroll
      for (int p = 0; p < 2; ++p) pp[kc][p] = *reinterpret_cast<const float2*>(ps + g * TILE + kc * 16 + 2 * t4 + 8 * p);
    __syncwarp();
    unsigned vw[16];
#pragma unroll
    for (int qd = 0; qd < 4; ++qd) {
      const uint4 v = vw4[qd * 32 + lane];
      vw[qd * 4 + 0] = v.x; vw[qd * 4 + 1] = v.y; vw[qd * 4 + 2] = v.z; vw[qd * 4 + 3] = v.w;
    }
    unsigned vsc[32], vmn[32];  // [kc][pair][gc]
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint4 a = vm4[(0 * 4 + t4) * 8 + i];
      const uint4 b = vm4[(1 * 4 + t4) * 8 + i];
      vsc[4 * i] = a.x; vsc[4 * i + 1] = a.y; vsc[4 * i + 2] = a.z; vsc[4 * i + 3] = a.w;
      vmn[4 * i] = b.x; vmn[4 * i + 1] = b.y; vmn[4 * i + 2] = b.z; vmn[4 * i + 3] = b.w;
    }
    float corr[4][4];  // per gc: sum_t P m (every channel row the same)
#pragma unroll
    for (int gc = 0; gc < 4; ++gc)
#pragma unroll
      for (int k = 0; k < 4; ++k) corr[gc][k] = 0.f;
#pragma unroll
    for (int kc = 0; kc < 4; ++kc) {
      const __half2 p0 = __floats2half2_rn(pp[kc][0].x, pp[kc][0].y), p1 = __floats2half2_rn(pp[kc][1].x, pp[kc][1].y);
      unsigned bs[4][2];
#pragma unroll
      for (int gc = 0; gc < 4; ++gc) {
        bs[gc][0] = h2u(__hmul2(p0, u2h(vsc[(kc * 2 + 0) * 4 + gc])));
        bs[gc][1] = h2u(__hmul2(p1, u2h(vsc[(kc * 2 + 1) * 4 + gc])));
        mma16816(corr[gc], kOnes, kOnes, kOnes, kOnes, h2u(__hmul2(p0, u2h(vmn[(kc * 2 + 0) * 4 + gc]))),
                 h2u(__hmul2(p1, u2h(vmn[(kc * 2 + 1) * 4 + gc]))));
      }
#pragma unroll
      for (int mv = 0; mv < 8; ++mv) {
        // register (mv, kc, a): word mv*2 + (a & 1), field kc*2 + (a >> 1)
        const unsigned w0 = vw[mv * 2], w1 = vw[mv * 2 + 1];
        const unsigned w0s = w0 >> 10, w1s = w1 >> 10;
        const int j0 = kc * 2, j1 = j0 + 1;
        mma16816(acc[mv], codes_h2(w0, w0s, j0), codes_h2(w1, w1s, j0), codes_h2(w0, w0s, j1), codes_h2(w1, w1s, j1),
                 bs[mv >> 1][0], bs[mv >> 1][1]);
      }
    }
#pragma unroll
    for (int mv = 0; mv < 8; ++mv)
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[mv][k] += corr[mv >> 1][k];
    __syncwarp();
  }
  // Partial: o [8 heads][D], then m, l per head.
  float* out = part + ((size_t)seq * splits + split) * 8 * (D + 2);
#pragma unroll
  for (int mv = 0; mv < 8; ++mv)
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int c = mv * 16 + g + 8 * (k >> 1), h = 2 * t4 + (k & 1);
      out[h * (D + 2) + c] = acc[mv][k];
    }
  if (g == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      out[(2 * t4 + h) * (D + 2) + D] = m_run[h];
      out[(2 * t4 + h) * (D + 2) + D + 1] = l_run[h];
    }
  }
}

// One block per (seq, head < 7), D threads.
__global__ void combine(const float* __restrict__ part, int splits, float* __restrict__ o) {
  const int seq = blockIdx.y, h = blockIdx.x, c = threadIdx.x;
  const float* p = part + (size_t)seq * splits * 8 * (D + 2) + h * (D + 2);
  float m = -INFINITY;
  for (int i = 0; i < splits; ++i) m = fmaxf(m, p[(size_t)i * 8 * (D + 2) + D]);
  float l = 0.f, acc = 0.f;
  for (int i = 0; i < splits; ++i) {
    const float* pi = p + (size_t)i * 8 * (D + 2);
    const float w = exp2f(pi[D] - m);
    l += w * pi[D + 1];
    acc += w * pi[c];
  }
  o[((size_t)seq * QPK + h) * D + c] = acc / l;
}

// ---- host: quantize one sequence's K, V (kivi-2: keys per channel over 32 tokens, values per token over 32 channels)
// The arithmetic of uniform_format.h's stored_group (where scale and min fit fp16, as for these values) and
// encode_value, written out here rather than included so that the prototype builds with nvcc alone, outside VidKV.
static unsigned short f2h(float x) { __half h = __float2half_rn(x); return *reinterpret_cast<unsigned short*>(&h); }
static float h2f(unsigned short b) { __half h; *reinterpret_cast<unsigned short*>(&h) = b; return __half2float(h); }

struct Quantized {
  std::vector<unsigned char> kc, vc;          // codes [T][D]
  std::vector<unsigned short> ks, km, vs, vm;  // keys [T/32][D]; values [T][D/32]
};
static void quant_group(const float* x, int stride, unsigned char* code, int cstride, unsigned short& s, unsigned short& m) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < 32; ++i) { lo = std::min(lo, x[i * stride]); hi = std::max(hi, x[i * stride]); }
  s = f2h((hi - lo) / 3.f);
  m = f2h(lo);
  const float sf = h2f(s), mf = h2f(m);
  for (int i = 0; i < 32; ++i) {
    float v = sf > 0 ? (x[i * stride] - mf) / sf : 0.f;
    v = std::min(3.f, std::max(0.f, v));
    code[i * cstride] = (unsigned char)std::nearbyint(v);
  }
}

int main(int argc, char** argv) {
  const int batch = argc > 1 ? std::atoi(argv[1]) : 8;
  const int T = argc > 2 ? std::atoi(argv[2]) : 65536;
  const int tiles_per_split = argc > 3 ? std::atoi(argv[3]) : 16;
  if (batch < 1 || T < TILE || T % TILE != 0 || tiles_per_split < 1) {
    std::fprintf(stderr, "usage: %s [BATCH >= 1] [TOKENS: a positive multiple of %d] [TILES_PER_SPLIT >= 1]\n", argv[0], TILE);
    return 2;
  }
  const int seqs = batch * 4, tiles = T / TILE;
  const int splits = (tiles + tiles_per_split - 1) / tiles_per_split;
  // One distinct sequence (replicated on the device): speed does not depend on the values.
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> K((size_t)T * D), V((size_t)T * D);
  std::vector<float> chan_scale(D);
  for (int c = 0; c < D; ++c) chan_scale[c] = (c % 17 == 3) ? 8.f : 1.f;  // a few outlier key channels
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < D; ++c) {
      K[(size_t)t * D + c] = h2f(f2h(nd(rng) * chan_scale[c] + 0.5f));
      V[(size_t)t * D + c] = h2f(f2h(nd(rng)));
    }
  Quantized qz;
  qz.kc.resize((size_t)T * D); qz.vc.resize((size_t)T * D);
  qz.ks.resize((size_t)T / 32 * D); qz.km.resize(qz.ks.size()); qz.vs.resize((size_t)T * D / 32); qz.vm.resize(qz.vs.size());
  for (int gt = 0; gt < T / 32; ++gt)
    for (int c = 0; c < D; ++c)
      quant_group(&K[(size_t)gt * 32 * D + c], D, &qz.kc[(size_t)gt * 32 * D + c], D, qz.ks[(size_t)gt * D + c], qz.km[(size_t)gt * D + c]);
  for (int t = 0; t < T; ++t)
    for (int gc = 0; gc < D / 32; ++gc)
      quant_group(&V[(size_t)t * D + gc * 32], 1, &qz.vc[(size_t)t * D + gc * 32], 1, qz.vs[(size_t)t * 4 + gc], qz.vm[(size_t)t * 4 + gc]);
  // Pack into the fragment layout.
  std::vector<unsigned> packed((size_t)tiles * kTileWords, 0u);
  for (int tile = 0; tile < tiles; ++tile) {
    unsigned* tb = &packed[(size_t)tile * kTileWords];
    const int t0 = tile * TILE;
    auto put = [&](unsigned* words, int lane, int w, int j, unsigned lo, unsigned hi) {
      // word w of the lane: quad w/4, slot w%4 -> index (w/4)*128 + lane*4 + w%4
      unsigned& x = words[(w / 4) * 128 + lane * 4 + (w % 4)];
      const int sh = j < 5 ? 2 * j : 10 + 2 * (j - 5);
      x |= (lo & 3u) << sh;
      x |= (hi & 3u) << (16 + sh);
    };
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane >> 2, t4 = lane & 3;
      for (int mt = 0; mt < 4; ++mt)
        for (int kc = 0; kc < 8; ++kc)
          for (int a = 0; a < 4; ++a) {
            const int tok = t0 + mt * 16 + g + 8 * (a & 1), ch = kc * 16 + 2 * t4 + 8 * (a >> 1);
            put(tb, lane, mt * 4 + (a & 1) * 2 + (kc >> 2), (kc & 3) * 2 + (a >> 1), qz.kc[(size_t)tok * D + ch],
                qz.kc[(size_t)tok * D + ch + 1]);
          }
      for (int mv = 0; mv < 8; ++mv)
        for (int kc = 0; kc < 4; ++kc)
          for (int a = 0; a < 4; ++a) {
            const int ch = mv * 16 + g + 8 * (a & 1), tok = t0 + kc * 16 + 2 * t4 + 8 * (a >> 1);
            put(tb + kCodeWords, lane, mv * 2 + (a & 1), kc * 2 + (a >> 1), qz.vc[(size_t)tok * D + ch],
                qz.vc[(size_t)(tok + 1) * D + ch]);
          }
    }
    unsigned short* km = reinterpret_cast<unsigned short*>(tb + 2 * kCodeWords);
    for (int sm = 0; sm < 2; ++sm)
      for (int grp = 0; grp < 2; ++grp)
        for (int t4 = 0; t4 < 4; ++t4)
          for (int kc = 0; kc < 8; ++kc)
            for (int p = 0; p < 2; ++p)
              for (int e = 0; e < 2; ++e) {
                const int ch = kc * 16 + 2 * t4 + 8 * p + e;
                const size_t gi = (size_t)(t0 / 32 + grp) * D + ch;
                km[((((sm * 2 + grp) * 4 + t4) * 8 + kc) * 2 + p) * 2 + e] = sm == 0 ? qz.ks[gi] : qz.km[gi];
              }
    unsigned short* vm = reinterpret_cast<unsigned short*>(tb + 2 * kCodeWords + 2 * kKeyMetaHalf2);
    for (int sm = 0; sm < 2; ++sm)
      for (int t4 = 0; t4 < 4; ++t4)
        for (int kc = 0; kc < 4; ++kc)
          for (int p = 0; p < 2; ++p)
            for (int gc = 0; gc < 4; ++gc)
              for (int e = 0; e < 2; ++e) {
                const int tok = t0 + kc * 16 + 2 * t4 + 8 * p + e;
                vm[(((((sm * 4 + t4) * 4 + kc) * 2 + p) * 4 + gc) * 2) + e] = sm == 0 ? qz.vs[(size_t)tok * 4 + gc] : qz.vm[(size_t)tok * 4 + gc];
              }
  }
  // Queries: [seqs][8][D], pre-scaled.
  const float qscale = 1.f / std::sqrt((float)D) * 1.4426950408889634f;
  std::vector<float> qv((size_t)seqs * 8 * D, 0.f);
  for (int sq = 0; sq < seqs; ++sq)
    for (int h = 0; h < QPK; ++h)
      for (int c = 0; c < D; ++c) qv[((size_t)sq * 8 + h) * D + c] = h2f(f2h(nd(rng))) * qscale;
  const size_t seq_words = (size_t)tiles * kTileWords;
  unsigned* dcache;
  float *dq, *dpart, *dout;
  CK(cudaMalloc(&dcache, seq_words * 4 * seqs));
  CK(cudaMalloc(&dq, qv.size() * 4));
  CK(cudaMalloc(&dpart, (size_t)seqs * splits * 8 * (D + 2) * 4));
  CK(cudaMalloc(&dout, (size_t)seqs * QPK * D * 4));
  CK(cudaMemcpy(dcache, packed.data(), seq_words * 4, cudaMemcpyHostToDevice));
  for (int sq = 1; sq < seqs; ++sq) CK(cudaMemcpy(dcache + sq * seq_words, dcache, seq_words * 4, cudaMemcpyDeviceToDevice));
  CK(cudaMemcpy(dq, qv.data(), qv.size() * 4, cudaMemcpyHostToDevice));
  const dim3 grid((splits + WARPS - 1) / WARPS, seqs), cgrid(QPK, seqs);
  const int kDynSmem = WARPS * 2 * kTileWords * 4;
  CK(cudaFuncSetAttribute(attend, cudaFuncAttributeMaxDynamicSharedMemorySize, kDynSmem));
  auto run = [&] {
    attend<<<grid, WARPS * 32, kDynSmem>>>(dq, dcache, tiles, tiles_per_split, splits, dpart);
    combine<<<cgrid, D>>>(dpart, splits, dout);
  };
  run();
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  // Check sequences 0 and seqs-1 (same cache, different queries) against double precision over the dequantized cache:
  // the largest |error| over their 7 heads and 128 channels, beside the largest |o| and the largest sum_t p_t |v_t| / l
  // (the magnitude of what was averaged, the scale that rounding errors of the factors are relative to).
  std::vector<float> out((size_t)seqs * QPK * D);
  CK(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost));
  double worst = 0, largest_o = 0, largest_mag = 0;
  for (int sq : {0, seqs - 1})
    for (int h = 0; h < QPK; ++h) {
      const float* qq = &qv[((size_t)sq * 8 + h) * D];
      std::vector<double> sc(T);
      double mxs = -1e300;
      for (int t = 0; t < T; ++t) {
        double a = 0;
        for (int c = 0; c < D; ++c) {
          const size_t gi = (size_t)(t / 32) * D + c;
          a += (double)qq[c] * ((double)qz.kc[(size_t)t * D + c] * h2f(qz.ks[gi]) + h2f(qz.km[gi]));
        }
        sc[t] = a;
        mxs = std::max(mxs, a);
      }
      double l = 0;
      for (int t = 0; t < T; ++t) { sc[t] = std::exp2(sc[t] - mxs); l += sc[t]; }
      for (int c = 0; c < D; ++c) {
        double o = 0, mag = 0;
        for (int t = 0; t < T; ++t) {
          const int gc = c / 32;
          const double v = (double)qz.vc[(size_t)t * D + c] * h2f(qz.vs[(size_t)t * 4 + gc]) + h2f(qz.vm[(size_t)t * 4 + gc]);
          o += sc[t] * v;
          mag += sc[t] * std::fabs(v);
        }
        o /= l;
        largest_o = std::max(largest_o, std::fabs(o));
        largest_mag = std::max(largest_mag, mag / l);
        const double err = std::fabs(o - out[((size_t)sq * QPK + h) * D + c]);
        worst = std::max(worst, err);
      }
    }
  // Timing: median of 50.
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < 10; ++i) run();
  std::vector<float> ms;
  for (int i = 0; i < 50; ++i) {
    CK(cudaEventRecord(e0));
    run();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float x;
    CK(cudaEventElapsedTime(&x, e0, e1));
    ms.push_back(x);
  }
  std::sort(ms.begin(), ms.end());
  const double bytes = (double)seq_words * 4 * seqs;
  std::printf("batch %d tokens %d tiles/split %d splits %d: %.4f ms (min %.4f), cache %.1f MB, %.0f GB/s; "
              "max |err| %.3g (largest |o| %.3g, largest sum p |v| / l %.3g: error relative to it %.2g)\n",
              batch, T, tiles_per_split, splits, ms[ms.size() / 2], ms[0], bytes / 1e6, bytes / (ms[ms.size() / 2] * 1e-3) / 1e9,
              worst, largest_o, largest_mag, worst / largest_mag);
  return 0;
}
