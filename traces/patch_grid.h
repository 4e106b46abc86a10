// The patch grid of a trace's visual tokens, as `vidkv trace info` and `vidkv trace validate` report it.
//
// Frames: distinct /tokens/frame values of visual tokens. Rows x columns: 1 + the largest patch row / column of the
// visual tokens, except for closing tokens: LLaVA-OneVision ends a video with one image_newline token, recorded as
// visual with the last frame and patch (rows - 1, columns), one column past the grid (experiments/python/vidkv/
// token_layout.py). A column held by exactly one visual token while every other column holds more than one is such
// a closing token: it is counted in `extra` and not in the grid (a 4x4 grid of 32 frames plus its newline reads
// "4x4", not "4x5"). A single frame of a single row (every column one token) has no closing token by this rule.
#pragma once

#include <cstdint>

#include "vidkv/core/token_context.h"

namespace vidkv {

struct PatchGrid {
  int frames = 0;
  int rows = 0;
  int columns = 0;
  std::int64_t extra = 0;  // closing visual tokens outside the grid (LLaVA-OneVision's image_newline)
};

PatchGrid patch_grid(const TraceTokens& tokens);

}  // namespace vidkv
