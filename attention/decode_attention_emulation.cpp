#include "vidkv/attention/decode_attention_emulation.h"

#include "vidkv/core/error.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

namespace vidkv::attention_emulation {

namespace af = attention_format;
using namespace attention_tables;

namespace {

constexpr int kWarps = 4;

struct WarpState {
  std::vector<float> m, l, acc;  // [qpk], [qpk], [qpk][D]
  std::vector<float> gathered, tq;  // [qpk][D], [qpk][W]
  std::int32_t cached_block = INT_MIN;
  std::int32_t rank_block = INT_MIN;  // mixed_token values: as the general kernel, the rank carried between tiles
  std::int64_t rank_pos = 0, rank_base = 0;
};

void split(const Problem& p, std::int64_t b, std::int64_t h, int s, bool fast) {
  const std::int64_t D = p.channels, Q = p.qpk, W = af::key_width(p.key, D);
  std::vector<float> q(static_cast<std::size_t>(Q * D));
  for (std::int64_t i = 0; i < Q * D; ++i) q[static_cast<std::size_t>(i)] = query_element(p, b, h * Q + i / D, i % D);
  const SequenceEntry seq = p.sequences[b];
  const std::int64_t first_tile = seq.tile_begin + (fast ? 0 : seq.fast_count);
  const TileRange range = split_tiles(fast ? seq.fast_count : seq.tile_count - seq.fast_count,
                                      fast ? p.splits : p.generic_splits, s);
  std::vector<WarpState> warps(kWarps);
  for (auto& w : warps) {
    w.m.assign(static_cast<std::size_t>(Q), -HUGE_VALF);
    w.l.assign(static_cast<std::size_t>(Q), 0.0f);
    w.acc.assign(static_cast<std::size_t>(Q * D), 0.0f);
    w.gathered.assign(static_cast<std::size_t>(Q * D), 0.0f);
    w.tq.assign(static_cast<std::size_t>(Q * W), 0.0f);
  }
  const bool transform = af::needs_transform(p.key);
  for (int warp = 0; warp < kWarps; ++warp) {
    WarpState& w = warps[static_cast<std::size_t>(warp)];
    for (std::int64_t ti = range.first + warp; ti < range.last; ti += kWarps) {
      const TileEntry tile = p.tiles[first_tile + ti];
      VIDKV_ASSERT(fast == tile_is_fast(p, tile), "decode attention tables: tile at token ", tile.t0, " in the wrong part");
      const std::int64_t kbegin = key_block_begin(p, tile), vbegin = value_block_begin(p, tile);
      const std::int64_t ktr0 = tile.t0 - kbegin, vtr0 = tile.t0 - vbegin;
      af::PartRef kp;
      bool kstaged = false;
      std::vector<af::Meta> kmeta(static_cast<std::size_t>(W)), vmeta(static_cast<std::size_t>(value_meta_capacity(D)));
      const float* qk = q.data();
      if (tile.key_block >= 0) {
        kp = key_part(p, tile, h);
        if (transform) {
          if (tile.key_block != w.cached_block) {
            for (std::int64_t c = 0; c < D; ++c) {
              const std::int64_t idx = af::gathered_index(p.key, kp, D, c);
              for (std::int64_t hq = 0; hq < Q; ++hq)
                w.gathered[static_cast<std::size_t>(hq * D + idx)] = q[static_cast<std::size_t>(hq * D + c)];
            }
            // The transform kernel's tables and function (decode_attention.cu transform_kernel).
            std::vector<float> table_first(static_cast<std::size_t>(2 * D)), table_second(static_cast<std::size_t>(2 * D));
            af::fft_weight_tables(p.key, kp, table_first.data(), table_second.data(), 0, 1);
            for (std::int64_t i = 0; i < W; ++i)
              for (std::int64_t hq = 0; hq < Q; ++hq)
                w.tq[static_cast<std::size_t>(hq * W + i)] = af::transform_entry_tabulated(
                    p.key, kp, w.gathered.data() + hq * D, table_first.data(), table_second.data(), i);
            w.cached_block = tile.key_block;
          }
          qk = w.tq.data();
        }
        kstaged = key_meta_staged(kp, ktr0, tile.n);
        if (kstaged)
          for (std::int64_t i = 0; i < W; ++i) kmeta[static_cast<std::size_t>(i)] = key_meta_entry(kp, ktr0, i);
      }
      af::PartRef vp;
      int vmode = kValueMetaNone;
      if (tile.value_block >= 0) {
        vp = value_part(p, tile, h);
        vmode = value_meta_mode(p.value, vp, vtr0, tile.n, D);
        const std::int64_t count = value_meta_count(vmode, vp, tile.n, D);
        for (std::int64_t e = 0; e < count; ++e) vmeta[static_cast<std::size_t>(e)] = value_meta_entry(vmode, vp, vtr0, e);
      }
      // Scores of the tile's tokens ("lanes"), over the key width (packed) or the D channels (residual); the query
      // rows qk have stride qs.
      const std::int64_t width = tile.key_block >= 0 ? W : D, qs = qk == q.data() ? D : W;
      std::vector<float> sc(static_cast<std::size_t>(Q * tile.n), 0.0f);
      for (std::int32_t j = 0; j < tile.n; ++j)
        for (std::int64_t i = 0; i < width; ++i) {
          float k;
          if (kstaged) {
            const af::ChildView& v = i < kp.first_n ? kp.first : kp.second;
            k = af::decode_code(v, af::view_code(v, ktr0 + j, i < kp.first_n ? i : i - kp.first_n), kmeta[static_cast<std::size_t>(i)]);
          } else {
            k = key_element(p, seq, tile, kp, kbegin, h, tile.t0 + j, i);
          }
          for (std::int64_t hq = 0; hq < Q; ++hq) sc[static_cast<std::size_t>(hq * tile.n + j)] += qk[hq * qs + i] * k;
        }
      for (std::int64_t hq = 0; hq < Q; ++hq) {
        float* row = sc.data() + hq * tile.n;
        float mt = -HUGE_VALF;
        for (std::int32_t j = 0; j < tile.n; ++j) {
          row[j] *= p.score_scale;
          mt = std::max(mt, row[j]);
        }
        const float mn = std::max(w.m[static_cast<std::size_t>(hq)], mt);
        const float alpha = af::merge_factor(w.m[static_cast<std::size_t>(hq)], mn);
        float sum = 0.0f;
        for (std::int32_t j = 0; j < tile.n; ++j) {
          row[j] = exp2f(row[j] - mn);
          sum += row[j];
        }
        w.l[static_cast<std::size_t>(hq)] = w.l[static_cast<std::size_t>(hq)] * alpha + sum;
        for (std::int64_t c = 0; c < D; ++c) w.acc[static_cast<std::size_t>(hq * D + c)] *= alpha;
        w.m[static_cast<std::size_t>(hq)] = mn;
      }
      // mixed_token values: the protected tokens of the block before the tile (counted from the warp's previous
      // tile of the same block, as the kernel does).
      std::int64_t rank0 = 0;
      if (p.value.token_mixed && tile.value_block >= 0) {
        const bool cont = tile.value_block == w.rank_block && vtr0 >= w.rank_pos;
        w.rank_base = (cont ? w.rank_base : 0) + af::mask_count(vp.mask, cont ? w.rank_pos : 0, vtr0);
        w.rank_block = tile.value_block;
        w.rank_pos = vtr0;
        rank0 = w.rank_base;
      }
      for (std::int32_t j = 0; j < tile.n; ++j) {
        // Token j's rank: the kernel's lane j adds the tile's bits before it.
        const std::int64_t rank = p.value.token_mixed && tile.value_block >= 0 ? rank0 + af::mask_count(vp.mask, vtr0, vtr0 + j) : 0;
        for (std::int64_t c = 0; c < D; ++c) {
          const float v = vmode != kValueMetaNone ? value_staged_element(vmode, vp, vtr0, j, c, vmeta.data())
                                                  : value_element(p, seq, tile, vp, vbegin, h, tile.t0 + j, c, rank);
          for (std::int64_t hq = 0; hq < Q; ++hq)
            w.acc[static_cast<std::size_t>(hq * D + c)] += sc[static_cast<std::size_t>(hq * tile.n + j)] * v;
        }
      }
    }
  }
  const std::int64_t base = ((b * p.heads + h) * (p.splits + p.generic_splits) + (fast ? s : p.splits + s)) * Q;
  for (std::int64_t hq = 0; hq < Q; ++hq) {
    float mt = -HUGE_VALF;
    for (const auto& w : warps) mt = std::max(mt, w.m[static_cast<std::size_t>(hq)]);
    float lt = 0.0f;
    for (const auto& w : warps) lt += w.l[static_cast<std::size_t>(hq)] * af::merge_factor(w.m[static_cast<std::size_t>(hq)], mt);
    p.partial_ml[(base + hq) * 2] = mt;
    p.partial_ml[(base + hq) * 2 + 1] = lt;
    for (std::int64_t c = 0; c < D; ++c) {
      float a = 0.0f;
      for (const auto& w : warps)
        a += w.acc[static_cast<std::size_t>(hq * D + c)] * af::merge_factor(w.m[static_cast<std::size_t>(hq)], mt);
      p.partial_acc[(base + hq) * D + c] = a;
    }
  }
}

void combine(const Problem& p, std::int64_t b, std::int64_t h) {
  const std::int64_t D = p.channels, Q = p.qpk, S = p.splits + p.generic_splits;
  const std::int64_t base = (b * p.heads + h) * S;
  const int parts = combine_parts(D);
  std::vector<float> lp(static_cast<std::size_t>(parts)), ap(static_cast<std::size_t>(parts));
  for (std::int64_t hq = 0; hq < Q; ++hq) {
    float mt = -HUGE_VALF;
    for (std::int64_t s = 0; s < S; ++s) mt = std::max(mt, p.partial_ml[((base + s) * Q + hq) * 2]);
    for (std::int64_t c = 0; c < D; ++c) {
      // part k: the splits s = k mod parts, in order (the kernel's thread (k, c / V))
      std::fill(lp.begin(), lp.end(), 0.0f);
      std::fill(ap.begin(), ap.end(), 0.0f);
      for (std::int64_t s = 0; s < S; ++s) {
        const float f = af::merge_factor(p.partial_ml[((base + s) * Q + hq) * 2], mt);
        lp[static_cast<std::size_t>(s % parts)] += p.partial_ml[((base + s) * Q + hq) * 2 + 1] * f;
        ap[static_cast<std::size_t>(s % parts)] += p.partial_acc[((base + s) * Q + hq) * D + c] * f;
      }
      float lt = lp[0], a = ap[0];
      for (int k = 1; k < parts; ++k) {
        lt += lp[static_cast<std::size_t>(k)];
        a += ap[static_cast<std::size_t>(k)];
      }
      store_from_float(p.out, p.out_dtype, static_cast<std::size_t>((b * p.heads * Q + h * Q + hq) * D + c), a / lt);
    }
  }
}

}  // namespace

void run(const Problem& p) {
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t h = 0; h < p.heads; ++h)
      for (int fast = 1; fast >= 0; --fast)
        for (int s = 0; s < (fast ? p.splits : p.generic_splits); ++s) split(p, b, h, s, fast == 1);
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t h = 0; h < p.heads; ++h) combine(p, b, h);
}

}  // namespace vidkv::attention_emulation
