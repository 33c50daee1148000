#include "framework/eval/label_plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"
#include "framework/eval/canvas.h"
#include "framework/eval/draw.h"

enum {
    LABEL_PLOT_SIDE = 1600,      // 8 inches at 200 dpi
    LABEL_PLOT_PANEL = 800,
    LABEL_PLOT_BINS = 50,        // hist2d(bins=50)
    LABEL_PLOT_SHAPES = 500,     // boxes[:500]
    LABEL_PLOT_NAMES_MAX = 29,   // names under the bars when fewer than 30 classes
};
static const double LABEL_PLOT_FONT = 24;  // matplotlib's 10 pt at 200 dpi is 28 px; a little smaller fits names
static const CanvasColor BLACK = {0, 0, 0}, WHITE = {255, 255, 255}, AXIS = {80, 80, 80};

typedef struct PlotRect {
    int x, y, w, h;  // the data area of one panel, in picture pixels
} PlotRect;

static CanvasColor class_color(int64_t cls) {
    uint8_t rgb[3];
    draw_class_color(cls, rgb);
    return (CanvasColor){rgb[0], rgb[1], rgb[2]};
}

// A tick step of 1, 2 or 5 times a power of ten giving at most about six ticks up to `top`.
static double nice_step(double top) {
    double raw = top / 5, p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static void text_centred(Canvas *c, double cx, double y, const char *text, CanvasColor color) {
    canvas_text(c, cx - canvas_text_size(c, text).width / 2.0, y, text, color);
}

// The left axis of r from `lo` (bottom) to `hi` (top) with ticks every `step`, values printed with
// `decimals`, and the axis label written upwards beside them. With `down` the axis runs from top to
// bottom instead (image coordinates).
static void axis_left(Canvas *c, PlotRect r, double lo, double hi, double step, int decimals, const char *label,
                      bool down) {
    canvas_fill_rect(c, r.x - 2, r.y, 2, r.h, AXIS);
    int widest = 0;
    for (int i = 0; lo + i * step <= hi + 1e-9; i++) {
        double v = lo + i * step, f = (v - lo) / (hi - lo);
        int y = down ? r.y + (int)lround(f * r.h) : r.y + r.h - (int)lround(f * r.h);
        canvas_fill_rect(c, r.x - 10, y - 1, 8, 2, AXIS);
        char s[32];
        snprintf(s, sizeof s, "%.*f", decimals, v);
        CanvasTextSize ts = canvas_text_size(c, s);
        widest = ts.width > widest ? ts.width : widest;
        canvas_text(c, r.x - 14 - ts.width, y - ts.height / 2.0, s, BLACK);
    }
    CanvasTextSize ls = canvas_text_size(c, label);
    canvas_text_up(c, r.x - 24 - widest - ls.height, r.y + r.h / 2.0 + ls.width / 2.0, label, BLACK);
}

// The bottom axis of r from 0 to 1, ticks every 0.2, and its label under them.
static void axis_bottom_unit(Canvas *c, PlotRect r, const char *label) {
    canvas_fill_rect(c, r.x, r.y + r.h, r.w, 2, AXIS);
    int th = 0;
    for (int i = 0; i <= 5; i++) {
        int x = r.x + (int)lround(i * 0.2 * r.w);
        canvas_fill_rect(c, x - 1, r.y + r.h + 2, 2, 8, AXIS);
        char s[8];
        snprintf(s, sizeof s, "%.1f", i * 0.2);
        th = canvas_text_size(c, s).height;
        text_centred(c, x, r.y + r.h + 12, s, BLACK);
    }
    text_centred(c, r.x + r.w / 2.0, r.y + r.h + 16 + th, label, BLACK);
}

static void panel_instances(Canvas *c, const DatasetBox *boxes, int64_t n, const char *const *names, int nc) {
    int64_t *counts = yp_calloc((size_t)(nc > 0 ? nc : 1), sizeof *counts);
    int64_t top = 1;
    for (int64_t i = 0; i < n; i++)
        if (boxes[i].cls >= 0 && boxes[i].cls < nc) top = ++counts[boxes[i].cls] > top ? counts[boxes[i].cls] : top;
    bool named = nc <= LABEL_PLOT_NAMES_MAX;
    // Room under the bars for the longest name, written upwards (at most 260 px; longer ones are cut).
    int name_room = 0;
    char name[48];
    for (int k = 0; named && k < nc; k++) {
        draw_class_name(k, names, nc, name, sizeof name);
        int w = canvas_text_size(c, name).width;
        name_room = w > name_room ? w : name_room;
    }
    name_room = name_room > 260 ? 260 : name_room;
    PlotRect r = {.x = 150, .y = 40, .w = LABEL_PLOT_PANEL - 190, .h = LABEL_PLOT_PANEL - 100 - name_room};
    double step = nice_step((double)top * 1.05), hi = ceil(top * 1.05 / step) * step;
    axis_left(c, r, 0, hi, step, step < 1 ? 1 : 0, "instances", false);
    canvas_fill_rect(c, r.x, r.y + r.h, r.w, 2, AXIS);
    double slot = (double)r.w / (nc > 0 ? nc : 1);
    for (int k = 0; k < nc; k++) {
        int bh = (int)lround((double)counts[k] / hi * r.h);
        int bx = r.x + (int)lround(slot * (k + 0.1)), bw = (int)lround(slot * 0.8);  // hist(rwidth=0.8)
        canvas_fill_rect(c, bx, r.y + r.h - bh, bw > 1 ? bw : 1, bh, class_color(k));
        if (!named) continue;
        char count[24];
        snprintf(count, sizeof count, "%lld", (long long)counts[k]);
        if (slot >= canvas_text_size(c, count).width * 0.6)  // bar_label, where it does not overlap its neighbours
            text_centred(c, bx + bw / 2.0, r.y + r.h - bh - canvas_text_size(c, count).height - 2, count, BLACK);
        draw_class_name(k, names, nc, name, sizeof name);
        CanvasTextSize ts = canvas_text_size(c, name);
        double x = bx + bw / 2.0 - ts.height / 2.0;
        cairo_save(c->cr);
        cairo_rectangle(c->cr, x, r.y + r.h + 8, ts.height + 2, name_room + 4);
        cairo_clip(c->cr);
        canvas_text_up(c, x, r.y + r.h + 10 + (ts.width < name_room ? ts.width : name_room), name, BLACK);
        cairo_restore(c->cr);
    }
    if (!named) text_centred(c, r.x + r.w / 2.0, r.y + r.h + 16, "classes", BLACK);
    free(counts);
}

// The first boxes' shapes centred on a white square, as plot_labels draws them on its 1000 x 1000 image.
static void panel_shapes(Canvas *c, const DatasetBox *boxes, int64_t n) {
    PlotRect r = {.x = LABEL_PLOT_PANEL + 60, .y = 60, .w = LABEL_PLOT_PANEL - 120, .h = LABEL_PLOT_PANEL - 120};
    int64_t m = n < LABEL_PLOT_SHAPES ? n : LABEL_PLOT_SHAPES;
    for (int64_t i = 0; i < m; i++) {
        float w = fminf(fmaxf(boxes[i].w, 0), 1), h = fminf(fmaxf(boxes[i].h, 0), 1);
        int x1 = r.x + (int)lround((0.5 - w / 2) * r.w), x2 = r.x + (int)lround((0.5 + w / 2) * r.w);
        int y1 = r.y + (int)lround((0.5 - h / 2) * r.h), y2 = r.y + (int)lround((0.5 + h / 2) * r.h);
        canvas_outline_rect(c, x1, y1, x2, y2, 1, class_color(boxes[i].cls));
    }
}

// A 2-D histogram of (a, b) over [0, 1]², white for empty bins to blue for the fullest
// (matplotlib's hist2d with the white-blue colormap, bins clipped to the unit square).
static void panel_hist2d(Canvas *c, int px, int py, const DatasetBox *boxes, int64_t n, bool sizes, const char *xl,
                         const char *yl) {
    PlotRect r = {.x = px + 150, .y = py + 40, .w = LABEL_PLOT_PANEL - 190, .h = LABEL_PLOT_PANEL - 140};
    int64_t(*bins)[LABEL_PLOT_BINS] = yp_calloc(LABEL_PLOT_BINS, sizeof *bins);
    int64_t top = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = sizes ? boxes[i].w : boxes[i].cx, b = sizes ? boxes[i].h : boxes[i].cy;
        if (!isfinite(a) || !isfinite(b)) continue;
        int ia = (int)fmin(fmax(a * LABEL_PLOT_BINS, 0), LABEL_PLOT_BINS - 1);
        int ib = (int)fmin(fmax(b * LABEL_PLOT_BINS, 0), LABEL_PLOT_BINS - 1);
        top = ++bins[ib][ia] > top ? bins[ib][ia] : top;
    }
    for (int ib = 0; ib < LABEL_PLOT_BINS; ib++)
        for (int ia = 0; ia < LABEL_PLOT_BINS; ia++) {
            if (!bins[ib][ia]) continue;
            double f = (double)bins[ib][ia] / (double)top;
            int x1 = r.x + ia * r.w / LABEL_PLOT_BINS, x2 = r.x + (ia + 1) * r.w / LABEL_PLOT_BINS;
            int y1 = r.y + ib * r.h / LABEL_PLOT_BINS, y2 = r.y + (ib + 1) * r.h / LABEL_PLOT_BINS;
            uint8_t rg = (uint8_t)lround(255 * (1 - f));
            canvas_fill_rect(c, x1, y1, x2 - x1, y2 - y1, (CanvasColor){rg, rg, 255});
        }
    free(bins);
    axis_left(c, r, 0, 1, 0.2, 1, yl, true);
    axis_bottom_unit(c, r, xl);
}

void label_plot_draw(const DatasetBox *boxes, int64_t n, const char *const *names, int nc, Image *out) {
    Canvas c;
    canvas_begin_blank(&c, LABEL_PLOT_SIDE, LABEL_PLOT_SIDE, WHITE);
    canvas_font(&c, LABEL_PLOT_FONT);
    panel_instances(&c, boxes, n, names, nc);
    panel_shapes(&c, boxes, n);
    panel_hist2d(&c, 0, LABEL_PLOT_PANEL, boxes, n, false, "x", "y");
    panel_hist2d(&c, LABEL_PLOT_PANEL, LABEL_PLOT_PANEL, boxes, n, true, "width", "height");
    *out = (Image){0};
    canvas_end(&c, out);
}
