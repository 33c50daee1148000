// Boxes from the network input back to the original image, as Ultralytics' predictor does
// (ultralytics.utils.ops.scale_boxes without ratio_pad, then clip_boxes).
#pragma once

#include <stdint.h>

// boxes: (n, 4) x1 y1 x2 y2 in pixels of the in_w x in_h letterboxed input, rewritten in place in
// pixels of the orig_w x orig_h image. The gain and padding are recomputed from the two sizes as
// LetterBox rounds them (per-axis gains new_w / orig_w and new_h / orig_h, padding round(d/2 - 0.1));
// arithmetic in float32 as PyTorch does it on a float tensor; the result clipped to [0, orig_w] and
// [0, orig_h].
void scale_boxes_to_original(int in_w, int in_h, int orig_w, int orig_h, float *boxes, int64_t n);
