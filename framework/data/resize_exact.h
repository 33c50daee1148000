// cv2.resize(INTER_LINEAR) on 8-bit RGB images, bit for bit as OpenCV 4.x computes it on x86-64
// (what Ultralytics' predictor letterboxes with): pixel-centre source positions in float, 11-bit
// fixed-point coefficients (rounded to nearest), a horizontal pass in exact integers, then the
// vertical pass of OpenCV's SIMD code, which drops 4 bits before multiplying and rounds at the end
// (not the exact 22-bit rounding of its scalar code). An exact 2x reduction in both directions is
// OpenCV's INTER_AREA average. Checked bit for bit against cv2.resize (tests/unit/test_resize_exact.c).
//
// augment_resize (framework/data/augment.h) is the floating-point equivalent training uses; the two
// differ by at most one level.
#pragma once

#include "framework/data/image_io.h"

// Resizes src to width x height (both >= 1) into *out (empty; the caller frees it with image_free).
void resize_exact_linear(const Image *src, int width, int height, Image *out);
