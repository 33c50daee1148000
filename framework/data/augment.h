// Augmentations as Ultralytics 8.4 applies them (ultralytics/data/augment.py), as pure functions of
// images, boxes and a random stream: every random number comes from rng_uniform(stream, i) with a
// fixed index i per draw (listed beside each function), so a sample's augmentation depends only on
// the stream the caller derives for it, never on threads or call order.
//
// Images are framework/data/image_io.h RGB8 (Ultralytics works on uint8 BGR; only HSV cares about the
// channel order, and it is converted). Boxes are pixel corners in the image they belong to. Every
// function that "allocates *out" expects an empty Image and leaves its ownership to the caller.
//
// Resampling is bilinear with OpenCV's pixel-centre convention (cv2.INTER_LINEAR), computed in
// floating point: results may differ from OpenCV's fixed-point arithmetic by one level.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/data/image_io.h"

// Ultralytics' hyperparameters of the same names; augment_settings_default gives its defaults.
typedef struct AugmentSettings {
    double hsv_h, hsv_s, hsv_v;  // RandomHSV gains: 0.015, 0.7, 0.4
    double degrees;              // RandomPerspective: rotation ± degrees, 0
    double translate;            // ± fraction of the output size, 0.1
    double scale;                // zoom in [1 - scale, 1 + scale], 0.5
    double shear;                // ± degrees, 0
    double perspective;          // ± per pixel, 0
    double fliplr;               // probability of a horizontal flip, 0.5
    double mosaic;               // probability of a mosaic, 1.0
    // Classification's RandomResizedCrop: the crop's area fraction [crop_scale_min, 1] and aspect
    // ratio range. 0.5 = 1 - scale is what Ultralytics' ClassificationDataset passes (not
    // torchvision's 0.08): small objects in small images do not survive an 8% crop.
    double crop_scale_min;       // 0.5
    double crop_ratio_min, crop_ratio_max;  // 3/4, 4/3
} AugmentSettings;

AugmentSettings augment_settings_default(void);

typedef struct AugBox {
    int32_t cls;
    float x1, y1, x2, y2;  // pixels
} AugBox;

// ---- resizing ----------------------------------------------------------------------------------------

// The size Ultralytics' load_image gives an image before augmentation: its long side becomes imgsz,
// the other ceil(side · imgsz / long side).
void augment_load_size(int width, int height, int imgsz, int *out_w, int *out_h);

// Bilinear resize of src to width × height; allocates *out. Edges are replicated.
void augment_resize(const Image *src, int width, int height, Image *out);

// A region of a source image, in source pixels (may be fractional).
typedef struct CropBox {
    double x, y, w, h;
} CropBox;

// Bilinear resize of `region` of src to width × height; allocates *out.
void augment_crop_resize(const Image *src, CropBox region, int width, int height, Image *out);

// ---- letterbox (LetterBox: keep aspect ratio, centre, pad with 114) ------------------------------------

typedef struct Letterbox {
    double ratio;        // source pixels → output pixels
    int new_w, new_h;    // the resized image inside the output
    int left, top;       // its offset
    int out_w, out_h;
} Letterbox;

// scaleup false only shrinks (Ultralytics' validation setting).
Letterbox augment_letterbox_fit(int width, int height, int out_w, int out_h, bool scaleup);
// Ultralytics' predictor on a .pt model (LetterBox auto=True, scaleup): the long side becomes imgsz,
// then each side is padded only up to the next multiple of `stride`, centred (top/left round(d - 0.1),
// bottom/right round(d + 0.1)).
Letterbox augment_letterbox_rect(int width, int height, int imgsz, int stride);
// Resizes (unless the size is unchanged) and pads with 114; allocates *out. cv_exact resizes with
// OpenCV's 8-bit fixed-point arithmetic (framework/data/resize_exact.h), else augment_resize.
void augment_letterbox_image(const Image *src, const Letterbox *lb, bool cv_exact, Image *out);
void augment_letterbox_boxes(const Letterbox *lb, AugBox *boxes, int n);

// ---- flip and colour ---------------------------------------------------------------------------------

void augment_flip_image(Image *im);
void augment_flip_boxes(AugBox *boxes, int n, int width);

// RandomHSV's random gains r (Ultralytics: uniform(-1, 1) · gain per channel).
typedef struct HsvGains {
    double h, s, v;
} HsvGains;

// Draws 0, 1, 2: the three uniforms.
HsvGains augment_hsv_draw(const AugmentSettings *st, uint64_t stream);

// RandomHSV with given gains: OpenCV's 8-bit RGB→HSV (hue 0..180), lookup tables hue + 180·h mod
// 180, saturation and value × (1 + gain) clipped, back with OpenCV's HSV→RGB.
void augment_hsv_apply(Image *im, HsvGains gains);

// ---- random perspective ------------------------------------------------------------------------------

// A projective map from input pixels to output pixels, and the zoom it drew.
typedef struct AugWarp {
    double m[3][3];
    double scale;
    int out_w, out_h;
} AugWarp;

// RandomPerspective's matrix T·S·R·P·C for an in_w × in_h input and an out_w × out_h output. Draws
// 0, 1: perspective x, y; 2: angle; 3: scale; 4, 5: shear x, y; 6, 7: translation x, y.
AugWarp augment_warp_draw(const AugmentSettings *st, int in_w, int in_h, int out_w, int out_h, uint64_t stream);

// w's inverse (output pixel -> input position); false when w is degenerate (a zero scale).
bool augment_warp_inverse(const AugWarp *w, double inv[3][3]);

// Warps src through w (bilinear, border 114); allocates *out (out_w × out_h).
void augment_warp_image(const Image *src, const AugWarp *w, Image *out);

// Maps boxes through w (bounding box of the four corners), clips them to the output, and keeps those
// that pass box_candidates (both sides > 2 px, area > 0.1 of the zoomed original, aspect < 100).
// Compacts boxes in place and returns how many are left.
int augment_warp_boxes(const AugWarp *w, AugBox *boxes, int n);

// ---- mosaic ------------------------------------------------------------------------------------------

typedef struct MosaicTile {
    int x1a, y1a, x2a, y2a;  // where the tile lands on the canvas
    int x1b, y1b, x2b, y2b;  // which part of the tile image
} MosaicTile;

// Mosaic of four images on a 2s × 2s canvas around a random centre (xc, yc) in [s/2, 3s/2): tile 0
// top left, 1 top right, 2 bottom left, 3 bottom right of the centre. Draws 0: yc, 1: xc.
typedef struct Mosaic {
    int s, xc, yc;
    MosaicTile tiles[4];
} Mosaic;

// widths/heights: the four images, already at their load size for s.
Mosaic augment_mosaic_layout(int s, const int widths[4], const int heights[4], uint64_t stream);
void augment_mosaic_image(const Mosaic *m, const Image tiles[4], Image *out);  // allocates *out (2s × 2s)

// Moves tile `tile`'s boxes onto the canvas, clips them to it, drops those left without area.
// Compacts in place and returns how many are left.
int augment_mosaic_boxes(const Mosaic *m, int tile, AugBox *boxes, int n);

// ---- classification ----------------------------------------------------------------------------------

// torchvision's RandomResizedCrop.get_params with st's scale and ratio: up to 10 attempts (draws
// 4k .. 4k+3 for attempt k: area, log-ratio, top, left), then a centre crop.
CropBox augment_random_resized_crop(const AugmentSettings *st, int width, int height, uint64_t stream);

// The region that torchvision's Resize(size) (shorter side to size) then CenterCrop(size) shows.
CropBox augment_center_crop(int width, int height, int size);
