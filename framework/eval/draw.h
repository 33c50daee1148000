// Boxes and labels on images, in Ultralytics' Annotator look (ultralytics/utils/plotting.py), for the
// run directory's pictures and `yolopipe predict`.
//
// Look: the 20-colour class palette (Colors), outlines max(round((w + h) / 2 * 0.003), 2) pixels
// wide growing into the box, a label "name 0.87" (predictions) or "name" (ground truth) on a filled
// rectangle of the box colour above the box (inside it when the box touches the top), its text in
// white or, on the palette's light colours, in the dark blue Annotator uses. Text through
// fontconfig ("DejaVu Sans", else sans-serif), sized as PIL's Annotator sizes it.
// Every input is drawable: boxes partly outside are clipped to the image, boxes completely outside,
// inverted or non-finite ones are skipped, a class outside the names (or names NULL) is labelled by
// its index.
#pragma once

#include <stdint.h>

#include "framework/data/image_io.h"

typedef struct DrawBox {
    float x1, y1, x2, y2;  // pixels of the image drawn on; the outline covers columns x1..x2 inclusive
    int32_t cls;
    float conf;            // < 0: ground truth (label shows the class name only)
} DrawBox;

// Line width, label font size and confidence digits; draw_style_for gives Annotator's choice.
typedef struct DrawStyle {
    int line_width;     // pixels
    double font_px;     // label text size (em, pixels)
    int conf_decimals;  // "0.87" (2, Annotator) or "0.9" (1, plot_images' grid)
} DrawStyle;

// Annotator's style for a width × height image: line width max(round((w + h) / 2 * 0.003), 2), font
// max(round((w + h) / 2 * 0.035), 12) pixels, two decimals.
DrawStyle draw_style_for(int width, int height);

// The palette colour of class `cls` (RGB, index cls mod 20; negative classes use its absolute value).
void draw_class_color(int64_t cls, uint8_t rgb[3]);

// Writes the label text for a class into buf (cap bytes): names[cls] when names is not NULL and
// 0 <= cls < nc, else the decimal index.
void draw_class_name(int64_t cls, const char *const *names, int64_t nc, char *buf, size_t cap);

// Draws n boxes onto im in draw_style_for(im)'s style, in order (later boxes on top).
void draw_boxes(Image *im, const DrawBox *boxes, int n, const char *const *names, int64_t nc);
void draw_boxes_styled(Image *im, const DrawBox *boxes, int n, const char *const *names, int64_t nc,
                       const DrawStyle *style);

// ---- plot_images' grid -------------------------------------------------------------------------

enum { DRAW_GRID_MAX_TILES = 16, DRAW_GRID_MAX_SIDE = 1920 };

typedef struct DrawTile {
    const Image *image;     // the tile's pixels (borrowed)
    const char *title;      // drawn at the tile's top-left (a file name; first 40 bytes), or NULL
    const DrawBox *boxes;   // in `image`'s pixels (borrowed), n_boxes of them
    int n_boxes;
    int32_t cls;            // classification: the tile's class (< 0: none)
    float conf;             // and its score (< 0: ground truth, name only)
} DrawTile;

// Lays out min(n, 16) tiles as Ultralytics' plot_images does: ceil(sqrt(n)) × ceil(sqrt(n)) cells of
// the first tile's size on white, filled column by column, the whole at most 1920 pixels on its
// long side (tiles shrunk to fit, boxes with them), white 2-pixel lines around each cell, the title
// in light grey, boxes with labels (confidence with one decimal), a classification tile's class
// under its title. Allocates *out (which holds nothing yet).
void draw_grid(const DrawTile *tiles, int n, const char *const *names, int64_t nc, Image *out);
