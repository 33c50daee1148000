#include "framework/data/resize_exact.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"

enum {
    COEF_BITS = 11,  // OpenCV's INTER_RESIZE_COEF_BITS
    COEF_ONE = 1 << COEF_BITS,
};

// saturate_cast<short>(float): round to nearest, ties to even (cvRound), then clamp.
static int16_t coef(float v) {
    float r = nearbyintf(v * COEF_ONE);
    return (int16_t)(r > 32767 ? 32767 : r < -32768 ? -32768 : r);
}

static int16_t sat16(int32_t v) { return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v); }
static uint8_t sat8(int32_t v) { return (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v); }

// One axis: for each destination index its first source index and the two weights. fixed_last is the
// first destination index past which OpenCV takes the last source sample alone (the horizontal pass
// reads only one sample there); the vertical pass clamps the row index instead.
typedef struct Axis {
    int *ofs;
    int16_t *w;  // (n, 2)
    int first_single;
} Axis;

static Axis axis_create(int src, int dst, bool clamp_weights) {
    Axis a = {.ofs = yp_malloc((size_t)dst * sizeof(int)), .w = yp_malloc((size_t)dst * 2 * sizeof(int16_t)),
              .first_single = dst};
    double scale = 1.0 / ((double)dst / src);  // OpenCV keeps 1 / inv_scale, not src / dst
    for (int d = 0; d < dst; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        f -= (float)s;
        if (clamp_weights) {
            if (s < 0) f = 0, s = 0;
            if (s + 1 >= src) {
                if (a.first_single > d) a.first_single = d;
                if (s >= src - 1) f = 0, s = src - 1;
            }
        }
        a.ofs[d] = s;
        a.w[2 * d] = coef(1.f - f);
        a.w[2 * d + 1] = coef(f);
    }
    return a;
}

static void axis_destroy(Axis *a) {
    free(a->ofs);
    free(a->w);
}

// The horizontal pass of one source row: (dst_w * 3) sums with 22 - 11 = 11 fractional bits.
static void resize_row(const uint8_t *s, const Axis *x, int dst_w, int32_t *out) {
    for (int d = 0; d < dst_w; d++) {
        const uint8_t *p = s + (size_t)x->ofs[d] * 3;
        for (int c = 0; c < 3; c++)
            out[d * 3 + c] = d < x->first_single ? p[c] * x->w[2 * d] + p[c + 3] * x->w[2 * d + 1] : p[c] * COEF_ONE;
    }
}

// VResizeLinear as OpenCV's SIMD code computes it (every value of the row, its tail included: checked
// against cv2.resize): 4 bits of each sum dropped to fit 16 bits, a high-half multiply by each
// weight, a saturating add, then rounding off the last 2 bits.
static void resize_column(const int32_t *r0, const int32_t *r1, const int16_t *b, int n, uint8_t *out) {
    for (int i = 0; i < n; i++) {
        int32_t m0 = (sat16(r0[i] >> 4) * b[0]) >> 16, m1 = (sat16(r1[i] >> 4) * b[1]) >> 16;
        out[i] = sat8((sat16(m0 + m1) + 2) >> 2);
    }
}

// resizeAreaFast for a 2x reduction: the rounded mean of each 2 x 2 block.
static void resize_half(const Image *src, Image *out) {
    for (int y = 0; y < out->height; y++)
        for (int x = 0; x < out->width; x++)
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = src->data + ((size_t)(2 * y) * src->width + 2 * x) * 3 + c;
                size_t row = (size_t)src->width * 3;
                out->data[((size_t)y * out->width + x) * 3 + c] = (uint8_t)((p[0] + p[3] + p[row] + p[row + 3] + 2) >> 2);
            }
}

void resize_exact_linear(const Image *src, int width, int height, Image *out) {
    YP_CHECK(width >= 1 && height >= 1 && src->width >= 1 && src->height >= 1);
    image_alloc(out, width, height);
    if (width == src->width && height == src->height) {
        memcpy(out->data, src->data, (size_t)width * height * 3);
        return;
    }
    if (src->width == 2 * width && src->height == 2 * height) {
        resize_half(src, out);
        return;
    }
    Axis x = axis_create(src->width, width, true), y = axis_create(src->height, height, false);
    int n = width * 3;
    int32_t *rows = yp_malloc((size_t)2 * n * sizeof(int32_t));  // the two source rows, resized across
    for (int d = 0; d < height; d++) {
        for (int k = 0; k < 2; k++) {
            int s = y.ofs[d] + k;
            s = s < 0 ? 0 : s >= src->height ? src->height - 1 : s;
            resize_row(src->data + (size_t)s * src->width * 3, &x, width, rows + (size_t)k * n);
        }
        resize_column(rows, rows + n, y.w + 2 * d, n, out->data + (size_t)d * n);
    }
    free(rows);
    axis_destroy(&x);
    axis_destroy(&y);
}
