// The patch grid that `vidkv trace info` / `trace validate` report (traces/patch_grid.h), with and without the
// closing newline token LLaVA-OneVision puts after a video (recorded one column past the grid).
#include "catch.h"
#include "vidkv/traces/patch_grid.h"

using namespace vidkv;

namespace {

// `frames` frames of rows x cols visual tokens (frame-major, row-major) between one context and one query token,
// plus `newline` closing tokens at (rows - 1, cols) of the last frame, as vidkv.token_layout records them.
TraceTokens video(int frames, int rows, int cols, bool newline) {
  TraceTokens t = TraceTokens::uniform(0);
  auto add = [&t](Modality m, int frame, int row, int col) {
    t.modality.push_back(m);
    t.position.push_back(static_cast<std::int32_t>(t.position.size()));
    t.frame.push_back(frame);
    t.patch_row.push_back(static_cast<std::int16_t>(row));
    t.patch_col.push_back(static_cast<std::int16_t>(col));
  };
  add(Modality::system_text, -1, -1, -1);
  for (int f = 0; f < frames; ++f)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) add(Modality::visual, f, r, c);
  if (newline) add(Modality::visual, frames - 1, rows - 1, cols);
  add(Modality::query_text, -1, -1, -1);
  return t;
}

}  // namespace

TEST_CASE("patch grid: a closing newline token is not a column of the grid", "[traces][patch_grid]") {
  // 32 frames of 4x4 + the newline at (3, 4): columns 0..3 hold 128 tokens each, column 4 one token -> 4x4 + 1.
  const PatchGrid g = patch_grid(video(32, 4, 4, true));
  CHECK(g.frames == 32);
  CHECK(g.rows == 4);
  CHECK(g.columns == 4);
  CHECK(g.extra == 1);
  // Without the newline: 4x4, nothing extra.
  const PatchGrid plain = patch_grid(video(32, 4, 4, false));
  CHECK((plain.rows == 4 && plain.columns == 4 && plain.extra == 0));
  // Two frames of one row: every column holds 2 tokens, the newline 1 -> 1x3 + 1.
  const PatchGrid row = patch_grid(video(2, 1, 3, true));
  CHECK((row.rows == 1 && row.columns == 3 && row.extra == 1));
  // One frame of one row: every column holds one token, so nothing tells a newline apart: 1x3, no extra.
  const PatchGrid single = patch_grid(video(1, 1, 3, false));
  CHECK((single.rows == 1 && single.columns == 3 && single.extra == 0));
  // No visual tokens: 0 frames of 0x0.
  const PatchGrid none = patch_grid(TraceTokens::uniform(5));
  CHECK((none.frames == 0 && none.rows == 0 && none.columns == 0 && none.extra == 0));
}
