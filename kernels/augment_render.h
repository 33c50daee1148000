// A detection training sample as a recipe that a backend renders where it computes (a GPU's
// input pipeline): the loader decodes the sample's images and draws its augmentation, and the
// backend composes, per output pixel, what the host loader would: load_image's resize, the mosaic
// canvas, RandomPerspective's warp, RandomHSV and the flip (framework/data/loader.c's
// detect_train_sample), from the same per-pixel arithmetic (kernels/augment_pixel.h). So a
// rendered sample has exactly the bytes the host loader gives it, and the decoded images cross to
// the device once, as bytes, instead of each stage's float32 result.
//
// Plain C structs and inline functions that kernels/cuda compiles too.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/augment_pixel.h"

enum { RENDER_MAX_TILES = 4 };

// One decoded image of a sample, resized to its load size and placed on the canvas.
typedef struct RenderTile {
    int64_t offset;          // first byte of its decoded image (interleaved RGB) in the batch's arena
    int src_w, src_h;        // decoded size
    int load_w, load_h;      // after load_image's resize (long side = the input size)
    int x1a, y1a, x2a, y2a;  // the canvas rectangle it covers
    int x1b, y1b;            // the resized image's pixel at the rectangle's top-left
} RenderTile;

typedef struct RenderRecipe {
    int n_tiles;             // 1 (the resized image is the canvas) or 4 (a mosaic)
    RenderTile tiles[RENDER_MAX_TILES];
    int canvas_w, canvas_h;
    bool warp_valid;         // false: a degenerate warp, every output pixel is the border
    double inv[3][3];        // RandomPerspective's inverse: output pixel -> canvas position
    bool hsv;                // apply RandomHSV with hsv_gain (h, s, v)
    double hsv_gain[3];
    bool flip;               // horizontal flip, last
} RenderRecipe;

// Bytes of a recipe's decoded images: they lie in the arena from tiles[0].offset on, one after another.
YP_HOST_DEVICE static inline int64_t render_recipe_bytes(const RenderRecipe *r) {
    int64_t bytes = 0;
    for (int k = 0; k < r->n_tiles; k++) bytes += (int64_t)r->tiles[k].src_w * r->tiles[k].src_h * 3;
    return bytes;
}

// Canvas pixel (u, v): the tile covering it, resized on the fly, or the border.
YP_HOST_DEVICE static inline void render_canvas_pixel(const RenderRecipe *r, const uint8_t *arena, int u, int v,
                                                      uint8_t out[3]) {
    for (int k = 0; k < r->n_tiles; k++) {
        const RenderTile *t = &r->tiles[k];
        if (u >= t->x1a && u < t->x2a && v >= t->y1a && v < t->y2a) {
            aug_resized_pixel(arena + t->offset, t->src_w, t->src_h, t->load_w, t->load_h, u - t->x1a + t->x1b,
                              v - t->y1a + t->y1b, out);
            return;
        }
    }
    out[0] = out[1] = out[2] = AUG_PAD_VALUE;
}

// Pixel (x, y) of the warped s x s image (before HSV and flip): augment_warp_image over the canvas.
YP_HOST_DEVICE static inline void render_warped_pixel(const RenderRecipe *r, const uint8_t *arena, int x, int y,
                                                      uint8_t out[3]) {
    double sx, sy;
    AugTaps t;
    if (!r->warp_valid || !aug_warp_source(r->inv, x, y, &sx, &sy) ||
        !aug_bilinear_taps(r->canvas_w, r->canvas_h, sx, sy, false, &t)) {
        out[0] = out[1] = out[2] = AUG_PAD_VALUE;
        return;
    }
    uint8_t taps[4][3];
    for (int k = 0; k < 4; k++) {
        if (t.pad[k]) taps[k][0] = taps[k][1] = taps[k][2] = AUG_PAD_VALUE;
        else render_canvas_pixel(r, arena, t.x[k], t.y[k], taps[k]);
    }
    for (int c = 0; c < 3; c++) {
        const int v[4] = {taps[0][c], taps[1][c], taps[2][c], taps[3][c]};
        out[c] = aug_bilinear_mix(v, t.fx, t.fy);
    }
}

// Output pixel (x, y) of the side x side sample. sdiv/hdiv: aug_hsv_tables; luts: aug_hsv_luts of
// the recipe's hsv_gain (unused without HSV).
YP_HOST_DEVICE static inline void render_pixel(const RenderRecipe *r, const uint8_t *arena, int side, int x, int y,
                                               const int *sdiv, const int *hdiv, const uint8_t *const luts[3],
                                               uint8_t out[3]) {
    render_warped_pixel(r, arena, r->flip ? side - 1 - x : x, y, out);
    if (r->hsv) aug_hsv_pixel(out, sdiv, hdiv, luts);
}
