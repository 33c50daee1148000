#include "framework/eval/draw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"
#include "framework/data/augment.h"
#include "framework/eval/canvas.h"

enum { DRAW_PALETTE_N = 20 };

// Ultralytics' Colors palette (RGB) and whether Annotator writes dark text on it: its light colours
// (Annotator.dark_colors, there in BGR) get the text colour (17, 31, 104), the others white.
static const struct {
    CanvasColor color;
    bool dark_text;
} draw_palette[DRAW_PALETTE_N] = {
    {{0x04, 0x2a, 0xff}, false}, {{0x0b, 0xdb, 0xeb}, true},  {{0xf3, 0xf3, 0xf3}, true},
    {{0x00, 0xdf, 0xb7}, true},  {{0x11, 0x1f, 0x68}, false}, {{0xff, 0x6f, 0xdd}, true},
    {{0xff, 0x44, 0x4f}, false}, {{0xcc, 0xed, 0x00}, true},  {{0x00, 0xf3, 0x44}, true},
    {{0xbd, 0x00, 0xff}, false}, {{0x00, 0xb4, 0xff}, false}, {{0xdd, 0x00, 0xba}, false},
    {{0x00, 0xff, 0xff}, true},  {{0x26, 0xc0, 0x00}, false}, {{0x01, 0xff, 0xb3}, true},
    {{0x7d, 0x24, 0xff}, false}, {{0x7b, 0x00, 0x68}, false}, {{0xff, 0x1b, 0x6c}, false},
    {{0xfc, 0x6d, 0x2f}, false}, {{0xa2, 0xff, 0x0b}, true},
};
static const CanvasColor DRAW_TEXT_DARK = {17, 31, 104}, DRAW_TEXT_LIGHT = {255, 255, 255};

static int draw_palette_index(int64_t cls) {
    int64_t i = cls % DRAW_PALETTE_N;
    return (int)(i < 0 ? -i : i);
}

void draw_class_color(int64_t cls, uint8_t rgb[3]) {
    CanvasColor c = draw_palette[draw_palette_index(cls)].color;
    rgb[0] = c.r;
    rgb[1] = c.g;
    rgb[2] = c.b;
}

void draw_class_name(int64_t cls, const char *const *names, int64_t nc, char *buf, size_t cap) {
    if (names && cls >= 0 && cls < nc && names[cls])
        snprintf(buf, cap, "%s", names[cls]);
    else
        snprintf(buf, cap, "%lld", (long long)cls);
}

DrawStyle draw_style_for(int width, int height) {
    // Python's round() rounds halves to even, as rint does in the default rounding mode.
    double mean = (width + height) / 2.0;
    return (DrawStyle){.line_width = (int)fmax(rint(mean * 0.003), 2),
                       .font_px = fmax(rint(mean * 0.035), 12),
                       .conf_decimals = 2};
}

// A float pixel coordinate to an integer one, as Ultralytics' int() truncation (of non-negative
// values) gives it; far-away values are clamped first so that the conversion is defined.
static int draw_coord(float v) {
    return (int)floorf(fminf(fmaxf(v, -1e7f), 1e7f));
}

// The part of the canvas one box may draw on: the whole image, or its tile in a grid.
typedef struct DrawArea {
    int x0, y0, x1, y1;  // [x0, x1) × [y0, y1)
} DrawArea;

static void draw_box_on(Canvas *c, const DrawBox *box, const char *const *names, int64_t nc,
                        const DrawStyle *style, DrawArea area) {
    if (!isfinite(box->x1) || !isfinite(box->y1) || !isfinite(box->x2) || !isfinite(box->y2)) return;
    int x1 = draw_coord(box->x1), y1 = draw_coord(box->y1), x2 = draw_coord(box->x2), y2 = draw_coord(box->y2);
    if (x2 < x1 || y2 < y1 || x2 < area.x0 || y2 < area.y0 || x1 >= area.x1 || y1 >= area.y1) return;
    // Clipped to the area, so that a box cut by the border keeps its outline on that side.
    x1 = x1 < area.x0 ? area.x0 : x1;
    y1 = y1 < area.y0 ? area.y0 : y1;
    x2 = x2 >= area.x1 ? area.x1 - 1 : x2;
    y2 = y2 >= area.y1 ? area.y1 - 1 : y2;
    int pi = draw_palette_index(box->cls);
    CanvasColor color = draw_palette[pi].color;
    canvas_outline_rect(c, x1, y1, x2, y2, style->line_width, color);

    char name[128], label[160];
    draw_class_name(box->cls, names, nc, name, sizeof name);
    if (box->conf >= 0 && isfinite(box->conf))
        snprintf(label, sizeof label, "%s %.*f", name, style->conf_decimals, box->conf);
    else
        snprintf(label, sizeof label, "%s", name);
    canvas_font(c, style->font_px);
    CanvasTextSize ts = canvas_text_size(c, label);
    // Annotator's placement: above the box when there is room, else inside its top; shifted left to
    // stay inside the image (here: the area, so that a grid's labels stay on their own tile).
    bool outside = y1 - area.y0 >= ts.height;
    int lx = x1 > area.x1 - ts.width ? area.x1 - ts.width : x1;
    lx = lx < area.x0 ? area.x0 : lx;
    int ly = outside ? y1 - ts.height : y1;
    canvas_fill_rect(c, lx, ly, ts.width + 1, ts.height + 1, color);
    canvas_text(c, lx, ly, label, draw_palette[pi].dark_text ? DRAW_TEXT_DARK : DRAW_TEXT_LIGHT);
}

void draw_boxes_styled(Image *im, const DrawBox *boxes, int n, const char *const *names, int64_t nc,
                       const DrawStyle *style) {
    if (n <= 0) return;
    Canvas c;
    canvas_begin(&c, im);
    for (int i = 0; i < n; i++) draw_box_on(&c, &boxes[i], names, nc, style, (DrawArea){0, 0, c.width, c.height});
    canvas_end(&c, im);
}

void draw_boxes(Image *im, const DrawBox *boxes, int n, const char *const *names, int64_t nc) {
    DrawStyle style = draw_style_for(im->width, im->height);
    draw_boxes_styled(im, boxes, n, names, nc, &style);
}

// ---- grid --------------------------------------------------------------------------------------

static const CanvasColor DRAW_WHITE = {255, 255, 255}, DRAW_TITLE = {220, 220, 220}, DRAW_TAG_BG = {64, 64, 64};

// Copies src (resized to w × h when it differs) into c at (x, y).
static void draw_grid_paste(Canvas *c, const Image *src, int x, int y, int w, int h) {
    Image resized = {0};
    const Image *im = src;
    if (src->width != w || src->height != h) {
        augment_resize(src, w, h, &resized);
        im = &resized;
    }
    cairo_surface_flush(c->surface);
    uint8_t *base = cairo_image_surface_get_data(c->surface);
    int stride = cairo_image_surface_get_stride(c->surface);
    for (int r = 0; r < h; r++) {
        uint32_t *row = (uint32_t *)(base + (size_t)(y + r) * (size_t)stride) + x;
        const uint8_t *p = im->data + (size_t)r * (size_t)w * 3;
        for (int q = 0; q < w; q++) row[q] = (uint32_t)p[3 * q] << 16 | (uint32_t)p[3 * q + 1] << 8 | p[3 * q + 2];
    }
    cairo_surface_mark_dirty(c->surface);
    image_free(&resized);
}

void draw_grid(const DrawTile *tiles, int n, const char *const *names, int64_t nc, Image *out) {
    YP_CHECK(n > 0 && tiles[0].image && tiles[0].image->width > 0);
    int bs = n < DRAW_GRID_MAX_TILES ? n : DRAW_GRID_MAX_TILES;
    int ns = (int)ceil(sqrt((double)bs));
    int w = tiles[0].image->width, h = tiles[0].image->height;
    double scale = (double)DRAW_GRID_MAX_SIDE / ns / (w > h ? w : h);
    if (scale < 1) {
        w = (int)ceil(scale * w);
        h = (int)ceil(scale * h);
    }
    Canvas c;
    canvas_begin_blank(&c, ns * w, ns * h, DRAW_WHITE);
    double fs = fmax((int)((h + w) * ns * 0.01), 18);  // plot_images' font size, and its line width
    DrawStyle style = {.line_width = (int)fmax(rint(fs / 10), 1), .font_px = fs, .conf_decimals = 1};
    for (int i = 0; i < bs; i++) {
        const DrawTile *t = &tiles[i];
        int x = w * (i / ns), y = h * (i % ns);  // column by column, as plot_images
        draw_grid_paste(&c, t->image, x, y, w, h);
        double sx = (double)w / t->image->width, sy = (double)h / t->image->height;
        for (int j = 0; j < t->n_boxes; j++) {
            DrawBox b = t->boxes[j];
            b.x1 = (float)(b.x1 * sx + x);
            b.x2 = (float)(b.x2 * sx + x);
            b.y1 = (float)(b.y1 * sy + y);
            b.y2 = (float)(b.y2 * sy + y);
            draw_box_on(&c, &b, names, nc, &style, (DrawArea){x, y, x + w, y + h});  // never on a neighbour
        }
        canvas_outline_rect(&c, x, y, x + w - 1, y + h - 1, 2, DRAW_WHITE);
        canvas_font(&c, fs);
        double ty = y + 5;
        if (t->title) {
            char title[41];
            snprintf(title, sizeof title, "%s", t->title);
            canvas_text(&c, x + 5, ty, title, DRAW_TITLE);
            ty += canvas_text_size(&c, title).height;
        }
        if (t->cls >= 0) {
            char name[128], label[160];
            draw_class_name(t->cls, names, nc, name, sizeof name);
            if (t->conf >= 0 && isfinite(t->conf))
                snprintf(label, sizeof label, "%s %.1f", name, t->conf);
            else
                snprintf(label, sizeof label, "%s", name);
            CanvasTextSize ts = canvas_text_size(&c, label);
            canvas_fill_rect(&c, x + 5, (int)ty, ts.width + 1, ts.height + 1, DRAW_TAG_BG);
            canvas_text(&c, x + 5, ty, label, draw_palette[draw_palette_index(t->cls)].color);
        }
    }
    *out = (Image){0};
    canvas_end(&c, out);
}
