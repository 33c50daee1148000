// A cairo drawing surface over an Image, for the run's pictures (draw.c, label_plot.c).
//
// cairo draws into its own 32-bit xRGB buffer: canvas_begin copies an Image in, canvas_end copies the
// pixels back out. Text goes through cairo's font selection, which asks fontconfig for "DejaVu Sans"
// (Debian's fonts-dejavu-core) and falls back to whatever sans-serif font fontconfig offers.
// Coordinates are pixels, (0, 0) the top-left corner of the top-left pixel.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cairo.h>

#include "framework/data/image_io.h"

typedef struct Canvas {
    cairo_surface_t *surface;  // owned
    cairo_t *cr;               // owned; antialiasing off for shapes (pixel-exact rectangles), on for text
    int width, height;
} Canvas;

typedef struct CanvasColor {
    uint8_t r, g, b;
} CanvasColor;

// Starts a canvas holding a copy of im's pixels.
void canvas_begin(Canvas *c, const Image *im);
// Starts a width × height canvas filled with `fill`.
void canvas_begin_blank(Canvas *c, int width, int height, CanvasColor fill);
// Copies the canvas into *im (reallocated when its size differs) and frees the canvas.
void canvas_end(Canvas *c, Image *im);

void canvas_set_color(Canvas *c, CanvasColor color);
// Fills the pixels [x, x + w) × [y, y + h), clipped to the canvas.
void canvas_fill_rect(Canvas *c, int x, int y, int w, int h, CanvasColor color);
// Draws the outline of the pixel rectangle [x1, x2] × [y1, y2] (inclusive), `width` pixels thick,
// growing inwards as PIL's ImageDraw.rectangle does.
void canvas_outline_rect(Canvas *c, int x1, int y1, int x2, int y2, int width, CanvasColor color);

// Sets the font size in pixels (the em size, as PIL's ImageFont.truetype size).
void canvas_font(Canvas *c, double px);
typedef struct CanvasTextSize {
    int width, height;  // the advance and ascent + descent of the current font, rounded up
    double ascent;
} CanvasTextSize;
CanvasTextSize canvas_text_size(Canvas *c, const char *text);
// Draws `text` with the top of its line box at y (baseline at y + ascent), starting at x.
void canvas_text(Canvas *c, double x, double y, const char *text, CanvasColor color);
// The same, rotated by 90 degrees counter-clockwise; (x, y) is where the text's start and top meet.
void canvas_text_up(Canvas *c, double x, double y, const char *text, CanvasColor color);
