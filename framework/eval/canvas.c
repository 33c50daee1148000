#include "framework/eval/canvas.h"

#include <math.h>
#include <string.h>

#include "framework/core/error.h"

static void canvas_create(Canvas *c, int width, int height) {
    YP_CHECK(width > 0 && height > 0);
    c->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    YP_CHECK(cairo_surface_status(c->surface) == CAIRO_STATUS_SUCCESS);
    c->cr = cairo_create(c->surface);
    YP_CHECK(cairo_status(c->cr) == CAIRO_STATUS_SUCCESS);
    c->width = width;
    c->height = height;
    cairo_set_antialias(c->cr, CAIRO_ANTIALIAS_NONE);
    // A font is always selected so that text works without a prior canvas_font call.
    cairo_select_font_face(c->cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_font_options_t *options = cairo_font_options_create();
    cairo_font_options_set_antialias(options, CAIRO_ANTIALIAS_GRAY);
    cairo_set_font_options(c->cr, options);
    cairo_font_options_destroy(options);
    cairo_set_font_size(c->cr, 12.0);
}

void canvas_begin(Canvas *c, const Image *im) {
    canvas_create(c, im->width, im->height);
    cairo_surface_flush(c->surface);
    uint8_t *base = cairo_image_surface_get_data(c->surface);
    int stride = cairo_image_surface_get_stride(c->surface);
    for (int y = 0; y < im->height; y++) {
        uint32_t *row = (uint32_t *)(base + (size_t)y * (size_t)stride);
        const uint8_t *src = im->data + (size_t)y * (size_t)im->width * 3;
        for (int x = 0; x < im->width; x++)
            row[x] = (uint32_t)src[3 * x] << 16 | (uint32_t)src[3 * x + 1] << 8 | src[3 * x + 2];
    }
    cairo_surface_mark_dirty(c->surface);
}

void canvas_begin_blank(Canvas *c, int width, int height, CanvasColor fill) {
    canvas_create(c, width, height);
    canvas_fill_rect(c, 0, 0, width, height, fill);
}

void canvas_end(Canvas *c, Image *im) {
    cairo_surface_flush(c->surface);
    if (!im->data || im->width != c->width || im->height != c->height) {
        image_free(im);
        image_alloc(im, c->width, c->height);
    }
    const uint8_t *base = cairo_image_surface_get_data(c->surface);
    int stride = cairo_image_surface_get_stride(c->surface);
    for (int y = 0; y < c->height; y++) {
        const uint32_t *row = (const uint32_t *)(base + (size_t)y * (size_t)stride);
        uint8_t *dst = im->data + (size_t)y * (size_t)c->width * 3;
        for (int x = 0; x < c->width; x++) {
            dst[3 * x] = (uint8_t)(row[x] >> 16);
            dst[3 * x + 1] = (uint8_t)(row[x] >> 8);
            dst[3 * x + 2] = (uint8_t)row[x];
        }
    }
    cairo_destroy(c->cr);
    cairo_surface_destroy(c->surface);
    *c = (Canvas){0};
}

void canvas_set_color(Canvas *c, CanvasColor color) {
    cairo_set_source_rgb(c->cr, color.r / 255.0, color.g / 255.0, color.b / 255.0);
}

void canvas_fill_rect(Canvas *c, int x, int y, int w, int h, CanvasColor color) {
    if (w <= 0 || h <= 0) return;
    canvas_set_color(c, color);
    cairo_rectangle(c->cr, x, y, w, h);  // cairo clips to the surface itself
    cairo_fill(c->cr);
}

void canvas_outline_rect(Canvas *c, int x1, int y1, int x2, int y2, int width, CanvasColor color) {
    int w = x2 - x1 + 1, h = y2 - y1 + 1;
    if (w <= 0 || h <= 0 || width <= 0) return;
    if (2 * width >= w || 2 * width >= h) {  // nothing left inside: a solid block
        canvas_fill_rect(c, x1, y1, w, h, color);
        return;
    }
    canvas_fill_rect(c, x1, y1, w, width, color);              // top
    canvas_fill_rect(c, x1, y2 - width + 1, w, width, color);  // bottom
    canvas_fill_rect(c, x1, y1 + width, width, h - 2 * width, color);          // left
    canvas_fill_rect(c, x2 - width + 1, y1 + width, width, h - 2 * width, color);  // right
}

void canvas_font(Canvas *c, double px) {
    cairo_set_font_size(c->cr, px);
}

CanvasTextSize canvas_text_size(Canvas *c, const char *text) {
    cairo_font_extents_t font;
    cairo_text_extents_t ext;
    cairo_font_extents(c->cr, &font);
    cairo_text_extents(c->cr, text, &ext);
    return (CanvasTextSize){.width = (int)ceil(ext.x_advance),
                            .height = (int)ceil(font.ascent + font.descent),
                            .ascent = font.ascent};
}

void canvas_text(Canvas *c, double x, double y, const char *text, CanvasColor color) {
    cairo_font_extents_t font;
    cairo_font_extents(c->cr, &font);
    canvas_set_color(c, color);
    cairo_move_to(c->cr, x, y + font.ascent);
    cairo_show_text(c->cr, text);
    cairo_new_path(c->cr);
}

void canvas_text_up(Canvas *c, double x, double y, const char *text, CanvasColor color) {
    cairo_font_extents_t font;
    cairo_font_extents(c->cr, &font);
    cairo_save(c->cr);
    cairo_translate(c->cr, x, y);
    cairo_rotate(c->cr, -M_PI / 2);
    canvas_set_color(c, color);
    cairo_move_to(c->cr, 0, font.ascent);
    cairo_show_text(c->cr, text);
    cairo_new_path(c->cr);
    cairo_restore(c->cr);
}
