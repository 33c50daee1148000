// The per-pixel arithmetic of the detection augmentations (framework/data/augment.c), as inline functions
// that kernels/cuda compiles into its rendering kernel too: the host's loader and a backend that
// renders a batch itself (BackendOps.render_images) compute every output byte with the same
// operations in the same order, so both give the same image bytes.
//
// Device code must not fuse a multiply and an add where the host rounds twice: AUG_MUL and AUG_ADD
// are plain operators on the host (C17 does not contract across statements, and GCC's ISO mode does
// not contract at all) and round-to-nearest intrinsics on the device.
#pragma once

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "framework/core/host_device.h"

enum { AUG_PAD_VALUE = 114 };  // Ultralytics' grey for letterbox, mosaic and warp borders
enum { AUG_HSV_SHIFT = 12 };   // OpenCV's fixed-point bits for 8-bit RGB→HSV

#ifdef __CUDA_ARCH__
#define AUG_MUL(a, b) __dmul_rn((a), (b))
#define AUG_ADD(a, b) __dadd_rn((a), (b))
#else
#define AUG_MUL(a, b) ((a) * (b))
#define AUG_ADD(a, b) ((a) + (b))
#endif

YP_HOST_DEVICE static inline uint8_t aug_round_u8(double v) {
    return v <= 0.0 ? 0 : v >= 255.0 ? 255 : (uint8_t)(v + 0.5);
}

// ---- bilinear sampling (cv2.INTER_LINEAR's pixel-centre convention, in double) -------------------------

// The four taps of a bilinear sample at (sx, sy) in a width x height image: tap k is pixel
// (x[k], y[k]), or the border value where pad[k]. With `replicate` (cv2.resize) the position is
// clamped to the image and edge pixels stand in for taps past it (only ever with weight 0);
// otherwise (warpAffine with a constant border) taps outside are the border. Returns false when
// every tap is the border.
typedef struct AugTaps {
    int x[4], y[4];
    bool pad[4];
    double fx, fy;  // weights of the right and bottom taps
} AugTaps;

YP_HOST_DEVICE static inline bool aug_bilinear_taps(int width, int height, double sx, double sy, bool replicate,
                                                    AugTaps *t) {
    if (replicate) {
        sx = sx < 0 ? 0 : sx > width - 1 ? width - 1 : sx;
        sy = sy < 0 ? 0 : sy > height - 1 ? height - 1 : sy;
    }
    double fx0 = floor(sx), fy0 = floor(sy);
    if (fx0 < -1 || fy0 < -1 || fx0 >= width || fy0 >= height) return false;
    int x0 = (int)fx0, y0 = (int)fy0;
    t->fx = sx - fx0;
    t->fy = sy - fy0;
    for (int k = 0; k < 4; k++) {
        int x = x0 + (k & 1), y = y0 + (k >> 1);
        bool inside = x >= 0 && y >= 0 && x < width && y < height;
        if (!inside && replicate) x = x < width ? x : width - 1, y = y < height ? y : height - 1;
        t->x[k] = x;
        t->y[k] = y;
        t->pad[k] = !inside && !replicate;
    }
    return true;
}

// One channel from its four tap values: rows first, then between them.
YP_HOST_DEVICE static inline uint8_t aug_bilinear_mix(const int v[4], double fx, double fy) {
    double top = AUG_ADD((double)v[0], AUG_MUL(fx, (double)(v[1] - v[0])));
    double bottom = AUG_ADD((double)v[2], AUG_MUL(fx, (double)(v[3] - v[2])));
    return aug_round_u8(AUG_ADD(top, AUG_MUL(fy, bottom - top)));
}

// Bilinear sample of an interleaved RGB image (border < 0: replicate the edges).
YP_HOST_DEVICE static inline void aug_sample_image(const uint8_t *data, int width, int height, double sx, double sy,
                                                   int border, uint8_t out[3]) {
    AugTaps t;
    if (!aug_bilinear_taps(width, height, sx, sy, border < 0, &t)) {
        out[0] = out[1] = out[2] = (uint8_t)border;
        return;
    }
    for (int c = 0; c < 3; c++) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = t.pad[k] ? border : data[((int64_t)t.y[k] * width + t.x[k]) * 3 + c];
        out[c] = aug_bilinear_mix(v, t.fx, t.fy);
    }
}

// Source position of output coordinate `i` when a region starting at `origin` and `scale` source
// pixels per output pixel is resized (pixel centres aligned).
YP_HOST_DEVICE static inline double aug_resize_coord(double origin, int i, double scale) {
    return AUG_ADD(AUG_ADD(origin, AUG_MUL((double)i + 0.5, scale)), -0.5);
}

// Pixel (x, y) of src (src_w x src_h) resized to dst_w x dst_h, as augment_resize gives it.
YP_HOST_DEVICE static inline void aug_resized_pixel(const uint8_t *src, int src_w, int src_h, int dst_w, int dst_h,
                                                    int x, int y, uint8_t out[3]) {
    if (src_w == dst_w && src_h == dst_h) {
        for (int c = 0; c < 3; c++) out[c] = src[((int64_t)y * src_w + x) * 3 + c];
        return;
    }
    double sx = aug_resize_coord(0.0, x, (double)src_w / dst_w), sy = aug_resize_coord(0.0, y, (double)src_h / dst_h);
    aug_sample_image(src, src_w, src_h, sx, sy, -1, out);
}

// Where output pixel (x, y) comes from under the inverse projective map inv: false when behind the
// projection (nothing of the source lands there).
YP_HOST_DEVICE static inline bool aug_warp_source(const double inv[3][3], int x, int y, double *sx, double *sy) {
    double px = AUG_ADD(AUG_ADD(AUG_MUL(inv[0][0], (double)x), AUG_MUL(inv[0][1], (double)y)), inv[0][2]);
    double py = AUG_ADD(AUG_ADD(AUG_MUL(inv[1][0], (double)x), AUG_MUL(inv[1][1], (double)y)), inv[1][2]);
    double pw = AUG_ADD(AUG_ADD(AUG_MUL(inv[2][0], (double)x), AUG_MUL(inv[2][1], (double)y)), inv[2][2]);
    if (pw <= 0) return false;
    *sx = px / pw;
    *sy = py / pw;
    return true;
}

// ---- HSV (RandomHSV on OpenCV's 8-bit conversions) -------------------------------------------------------

// OpenCV's rounded reciprocal tables for RGB→HSV: entry i (1..255) of sdiv and hdiv.
YP_HOST_DEVICE static inline int aug_hsv_sdiv(int i) { return (int)llrint((double)(255 << AUG_HSV_SHIFT) / i); }
YP_HOST_DEVICE static inline int aug_hsv_hdiv(int i) { return (int)llrint((double)(180 << AUG_HSV_SHIFT) / (6.0 * i)); }

// Ultralytics' lookup tables (float64, truncated to uint8 as numpy's astype does): entry x of the
// hue (channel 0), saturation (1) or value (2) table for gain `gain`.
YP_HOST_DEVICE static inline uint8_t aug_hsv_lut(int channel, int x, double gain) {
    if (channel == 0) {
        double h = fmod(AUG_ADD((double)x, AUG_MUL(gain, 180.0)), 180.0);
        if (h < 0) h += 180.0;
        return (uint8_t)h;
    }
    if (channel == 1 && x == 0) return 0;
    return (uint8_t)fmin(fmax(AUG_MUL((double)x, gain + 1.0), 0.0), 255.0);
}

// Both reciprocal tables, whole (entry 0 is 0 in each).
YP_HOST_DEVICE static inline void aug_hsv_tables(int sdiv[256], int hdiv[256]) {
    sdiv[0] = hdiv[0] = 0;
    for (int i = 1; i < 256; i++) sdiv[i] = aug_hsv_sdiv(i), hdiv[i] = aug_hsv_hdiv(i);
}

// The three lookup tables for gains (h, s, v).
YP_HOST_DEVICE static inline void aug_hsv_luts(const double gain[3], uint8_t luts[3][256]) {
    for (int c = 0; c < 3; c++)
        for (int x = 0; x < 256; x++) luts[c][x] = aug_hsv_lut(c, x, gain[c]);
}

// OpenCV's cvtColor(COLOR_RGB2HSV) for 8-bit pixels: integer arithmetic with the tables above
// (sdiv[0] and hdiv[0] are 0).
YP_HOST_DEVICE static inline void aug_rgb_to_hsv(const uint8_t rgb[3], const int *sdiv, const int *hdiv,
                                                 uint8_t hsv[3]) {
    int r = rgb[0], g = rgb[1], b = rgb[2];
    int v = r > g ? r : g;
    v = v > b ? v : b;
    int vmin = r < g ? r : g;
    vmin = vmin < b ? vmin : b;
    int diff = v - vmin;
    int s = (diff * sdiv[v] + (1 << (AUG_HSV_SHIFT - 1))) >> AUG_HSV_SHIFT;
    int h = v == r ? g - b : v == g ? b - r + 2 * diff : r - g + 4 * diff;
    h = (h * hdiv[diff] + (1 << (AUG_HSV_SHIFT - 1))) >> AUG_HSV_SHIFT;
    h += h < 0 ? 180 : 0;
    hsv[0] = (uint8_t)(h > 255 ? 255 : h);
    hsv[1] = (uint8_t)s;
    hsv[2] = (uint8_t)v;
}

// OpenCV's cvtColor(COLOR_HSV2RGB) for 8-bit pixels as its vectorised path computes it (which converts
// all but the last width mod 32 pixels of a row on AVX2; that scalar tail rounds instead of
// truncating): single precision, 1 - s·h fused, results truncated.
YP_HOST_DEVICE static inline void aug_hsv_to_rgb(const uint8_t hsv[3], uint8_t rgb[3]) {
    const int sector_data[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1}, {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};
    float s = hsv[1] * (1.0f / 255.0f), v = hsv[2] * (1.0f / 255.0f);
    float h = hsv[0] * (6.0f / 180.0f);
    float pre = truncf(h);
    h -= pre;
    int sector = (int)(pre - 6.0f * truncf(pre * (1.0f / 6.0f)));
    // 1 - s·h rounded once, as a fused multiply-add gives it: the product of two floats is exact in
    // double, and for these inputs the difference rounds the same (checked on every HSV triple).
    float tab[4] = {v, v * (1.0f - s), v * (float)(1.0 - (double)s * h), v * (float)(1.0 - (double)s * (1.0f - h))};
    const int *order = sector_data[sector];  // b, g, r
    for (int c = 0; c < 3; c++) {
        float x = truncf(tab[order[2 - c]] * 255.0f);
        rgb[c] = x <= 0.0f ? 0 : x >= 255.0f ? 255 : (uint8_t)x;
    }
}

// One pixel through RandomHSV with its tables: luts[c] is channel c's 256-entry lookup table.
YP_HOST_DEVICE static inline void aug_hsv_pixel(uint8_t px[3], const int *sdiv, const int *hdiv,
                                                const uint8_t *const luts[3]) {
    uint8_t hsv[3];
    aug_rgb_to_hsv(px, sdiv, hdiv, hsv);
    for (int c = 0; c < 3; c++) hsv[c] = luts[c][hsv[c]];
    aug_hsv_to_rgb(hsv, px);
}
