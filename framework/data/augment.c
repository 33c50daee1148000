#include "framework/data/augment.h"

#include <math.h>
#include <string.h>

#include "kernels/augment_pixel.h"
#include "framework/core/rng.h"
#include "framework/data/resize_exact.h"

AugmentSettings augment_settings_default(void) {
    return (AugmentSettings){
        .hsv_h = 0.015,
        .hsv_s = 0.7,
        .hsv_v = 0.4,
        .degrees = 0.0,
        .translate = 0.1,
        .scale = 0.5,
        .shear = 0.0,
        .perspective = 0.0,
        .fliplr = 0.5,
        .mosaic = 1.0,
        .crop_scale_min = 0.5,
        .crop_ratio_min = 3.0 / 4.0,
        .crop_ratio_max = 4.0 / 3.0,
    };
}

static double uniform(uint64_t stream, uint64_t index, double lo, double hi) {
    return lo + (hi - lo) * (double)rng_uniform(stream, index);
}

void augment_crop_resize(const Image *src, CropBox region, int width, int height, Image *out) {
    image_alloc(out, width, height);
    double sx = region.w / width, sy = region.h / height;
    for (int y = 0; y < height; y++) {
        double src_y = aug_resize_coord(region.y, y, sy);
        uint8_t *row = out->data + (size_t)y * width * 3;
        for (int x = 0; x < width; x++)
            aug_sample_image(src->data, src->width, src->height, aug_resize_coord(region.x, x, sx), src_y, -1, row + 3 * x);
    }
}

void augment_resize(const Image *src, int width, int height, Image *out) {
    if (width == src->width && height == src->height) {
        image_alloc(out, width, height);
        memcpy(out->data, src->data, (size_t)width * height * 3);
        return;
    }
    augment_crop_resize(src, (CropBox){0, 0, src->width, src->height}, width, height, out);
}

void augment_load_size(int width, int height, int imgsz, int *out_w, int *out_h) {
    double r = (double)imgsz / (width > height ? width : height);
    *out_w = width;
    *out_h = height;
    if (r == 1.0) return;
    double w = ceil(width * r), h = ceil(height * r);
    *out_w = w < imgsz ? (int)w : imgsz;
    *out_h = h < imgsz ? (int)h : imgsz;
}

// ---- letterbox ---------------------------------------------------------------------------------------

// Python's round(): halves to even, which nearbyint does in the default rounding mode.
static int round_half_even(double v) {
    return (int)nearbyint(v);
}

Letterbox augment_letterbox_fit(int width, int height, int out_w, int out_h, bool scaleup) {
    double r = fmin((double)out_h / height, (double)out_w / width);
    if (!scaleup && r > 1.0) r = 1.0;
    Letterbox lb = {.ratio = r, .out_w = out_w, .out_h = out_h};
    lb.new_w = round_half_even(width * r);
    lb.new_h = round_half_even(height * r);
    if (lb.new_w < 1) lb.new_w = 1;
    if (lb.new_h < 1) lb.new_h = 1;
    lb.left = round_half_even((out_w - lb.new_w) / 2.0 - 0.1);
    lb.top = round_half_even((out_h - lb.new_h) / 2.0 - 0.1);
    return lb;
}

Letterbox augment_letterbox_rect(int width, int height, int imgsz, int stride) {
    Letterbox lb = augment_letterbox_fit(width, height, imgsz, imgsz, true);
    int dw = (imgsz - lb.new_w) % stride, dh = (imgsz - lb.new_h) % stride;  // both >= 0: new <= imgsz
    lb.left = round_half_even(dw / 2.0 - 0.1);
    lb.top = round_half_even(dh / 2.0 - 0.1);
    // round(d - 0.1) + round(d + 0.1) = 2d for d a multiple of 1/2: the padding is dw and dh in all.
    lb.out_w = lb.new_w + dw;
    lb.out_h = lb.new_h + dh;
    return lb;
}

void augment_letterbox_image(const Image *src, const Letterbox *lb, bool cv_exact, Image *out) {
    Image resized;
    if (cv_exact) resize_exact_linear(src, lb->new_w, lb->new_h, &resized);
    else augment_resize(src, lb->new_w, lb->new_h, &resized);
    image_alloc(out, lb->out_w, lb->out_h);
    memset(out->data, AUG_PAD_VALUE, (size_t)lb->out_w * lb->out_h * 3);
    for (int y = 0; y < lb->new_h; y++)
        memcpy(out->data + ((size_t)(y + lb->top) * lb->out_w + lb->left) * 3, resized.data + (size_t)y * lb->new_w * 3,
               (size_t)lb->new_w * 3);
    image_free(&resized);
}

void augment_letterbox_boxes(const Letterbox *lb, AugBox *boxes, int n) {
    for (int i = 0; i < n; i++) {
        boxes[i].x1 = (float)(boxes[i].x1 * lb->ratio + lb->left);
        boxes[i].x2 = (float)(boxes[i].x2 * lb->ratio + lb->left);
        boxes[i].y1 = (float)(boxes[i].y1 * lb->ratio + lb->top);
        boxes[i].y2 = (float)(boxes[i].y2 * lb->ratio + lb->top);
    }
}

// ---- flip --------------------------------------------------------------------------------------------

void augment_flip_image(Image *im) {
    for (int y = 0; y < im->height; y++) {
        uint8_t *row = im->data + (size_t)y * im->width * 3;
        for (int a = 0, b = im->width - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[3 * a + c];
                row[3 * a + c] = row[3 * b + c];
                row[3 * b + c] = t;
            }
    }
}

void augment_flip_boxes(AugBox *boxes, int n, int width) {
    for (int i = 0; i < n; i++) {
        float x1 = boxes[i].x1;
        boxes[i].x1 = (float)width - boxes[i].x2;
        boxes[i].x2 = (float)width - x1;
    }
}

// ---- HSV ---------------------------------------------------------------------------------------------

HsvGains augment_hsv_draw(const AugmentSettings *st, uint64_t stream) {
    return (HsvGains){
        .h = uniform(stream, 0, -1, 1) * st->hsv_h,
        .s = uniform(stream, 1, -1, 1) * st->hsv_s,
        .v = uniform(stream, 2, -1, 1) * st->hsv_v,
    };
}

void augment_hsv_apply(Image *im, HsvGains gains) {
    int sdiv[256], hdiv[256];
    aug_hsv_tables(sdiv, hdiv);
    uint8_t lut[3][256];
    aug_hsv_luts((const double[3]){gains.h, gains.s, gains.v}, lut);
    const uint8_t *const luts[3] = {lut[0], lut[1], lut[2]};
    size_t n = (size_t)im->width * im->height;
    for (size_t i = 0; i < n; i++) aug_hsv_pixel(im->data + 3 * i, sdiv, hdiv, luts);
}

// ---- random perspective ------------------------------------------------------------------------------

static void mat3_mul(const double a[3][3], const double b[3][3], double out[3][3]) {
    double t[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) t[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
    memcpy(out, t, sizeof t);
}

static bool mat3_invert(const double m[3][3], double out[3][3]) {
    double c00 = m[1][1] * m[2][2] - m[1][2] * m[2][1], c01 = m[1][2] * m[2][0] - m[1][0] * m[2][2],
           c02 = m[1][0] * m[2][1] - m[1][1] * m[2][0];
    double det = m[0][0] * c00 + m[0][1] * c01 + m[0][2] * c02;
    if (fabs(det) < 1e-12) return false;
    double inv = 1.0 / det;
    out[0][0] = c00 * inv;
    out[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * inv;
    out[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * inv;
    out[1][0] = c01 * inv;
    out[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * inv;
    out[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * inv;
    out[2][0] = c02 * inv;
    out[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * inv;
    out[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * inv;
    return true;
}

bool augment_warp_inverse(const AugWarp *w, double inv[3][3]) { return mat3_invert(w->m, inv); }

AugWarp augment_warp_draw(const AugmentSettings *st, int in_w, int in_h, int out_w, int out_h, uint64_t stream) {
    const double deg = M_PI / 180.0;
    double C[3][3] = {{1, 0, -in_w / 2.0}, {0, 1, -in_h / 2.0}, {0, 0, 1}};
    double P[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    P[2][0] = uniform(stream, 0, -st->perspective, st->perspective);
    P[2][1] = uniform(stream, 1, -st->perspective, st->perspective);
    double angle = uniform(stream, 2, -st->degrees, st->degrees) * deg;
    double s = uniform(stream, 3, 1.0 - st->scale, 1.0 + st->scale);
    // cv2.getRotationMatrix2D(angle, centre (0, 0), scale)
    double R[3][3] = {{s * cos(angle), s * sin(angle), 0}, {-s * sin(angle), s * cos(angle), 0}, {0, 0, 1}};
    double S[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    S[0][1] = tan(uniform(stream, 4, -st->shear, st->shear) * deg);
    S[1][0] = tan(uniform(stream, 5, -st->shear, st->shear) * deg);
    double T[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    T[0][2] = uniform(stream, 6, 0.5 - st->translate, 0.5 + st->translate) * out_w;
    T[1][2] = uniform(stream, 7, 0.5 - st->translate, 0.5 + st->translate) * out_h;
    AugWarp w = {.scale = s, .out_w = out_w, .out_h = out_h};
    mat3_mul(T, S, w.m);
    mat3_mul(w.m, R, w.m);
    mat3_mul(w.m, P, w.m);
    mat3_mul(w.m, C, w.m);
    return w;
}

void augment_warp_image(const Image *src, const AugWarp *w, Image *out) {
    image_alloc(out, w->out_w, w->out_h);
    double inv[3][3];
    if (!augment_warp_inverse(w, inv)) {  // a degenerate draw (zero scale) maps nothing onto the output
        memset(out->data, AUG_PAD_VALUE, (size_t)w->out_w * w->out_h * 3);
        return;
    }
    for (int y = 0; y < w->out_h; y++) {
        uint8_t *row = out->data + (size_t)y * w->out_w * 3;
        for (int x = 0; x < w->out_w; x++) {
            double sx, sy;
            if (aug_warp_source(inv, x, y, &sx, &sy))
                aug_sample_image(src->data, src->width, src->height, sx, sy, AUG_PAD_VALUE, row + 3 * x);
            else memset(row + 3 * x, AUG_PAD_VALUE, 3);
        }
    }
}

// Ultralytics' box_candidates with its defaults (wh_thr 2, ar_thr 100, area_thr 0.1).
static bool box_candidate(double w1, double h1, double w2, double h2) {
    const double eps = 1e-16;
    double ar = fmax(w2 / (h2 + eps), h2 / (w2 + eps));
    return w2 > 2 && h2 > 2 && w2 * h2 / (w1 * h1 + eps) > 0.1 && ar < 100;
}

int augment_warp_boxes(const AugWarp *w, AugBox *boxes, int n) {
    int kept = 0;
    for (int i = 0; i < n; i++) {
        AugBox b = boxes[i];
        const double cx[4] = {b.x1, b.x2, b.x1, b.x2}, cy[4] = {b.y1, b.y2, b.y2, b.y1};
        double x1 = INFINITY, y1 = INFINITY, x2 = -INFINITY, y2 = -INFINITY;
        for (int k = 0; k < 4; k++) {
            double z = w->m[2][0] * cx[k] + w->m[2][1] * cy[k] + w->m[2][2];
            double x = (w->m[0][0] * cx[k] + w->m[0][1] * cy[k] + w->m[0][2]) / z;
            double y = (w->m[1][0] * cx[k] + w->m[1][1] * cy[k] + w->m[1][2]) / z;
            x1 = fmin(x1, x), x2 = fmax(x2, x), y1 = fmin(y1, y), y2 = fmax(y2, y);
        }
        x1 = fmin(fmax(x1, 0), w->out_w), x2 = fmin(fmax(x2, 0), w->out_w);
        y1 = fmin(fmax(y1, 0), w->out_h), y2 = fmin(fmax(y2, 0), w->out_h);
        if (!box_candidate((b.x2 - b.x1) * w->scale, (b.y2 - b.y1) * w->scale, x2 - x1, y2 - y1)) continue;
        boxes[kept++] = (AugBox){.cls = b.cls, .x1 = (float)x1, .y1 = (float)y1, .x2 = (float)x2, .y2 = (float)y2};
    }
    return kept;
}

// ---- mosaic ------------------------------------------------------------------------------------------

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

Mosaic augment_mosaic_layout(int s, const int widths[4], const int heights[4], uint64_t stream) {
    Mosaic m = {.s = s};
    // int(random.uniform(-border, 2s + border)) with border = -s // 2 (Python's floor division)
    int lo = (s + 1) / 2, hi = 2 * s - (s + 1) / 2;
    m.yc = (int)uniform(stream, 0, lo, hi);
    m.xc = (int)uniform(stream, 1, lo, hi);
    int xc = m.xc, yc = m.yc;
    for (int i = 0; i < 4; i++) {
        int w = widths[i], h = heights[i];
        MosaicTile *t = &m.tiles[i];
        if (i == 0) {  // top left
            *t = (MosaicTile){imax(xc - w, 0), imax(yc - h, 0), xc, yc, 0, 0, w, h};
            t->x1b = w - (t->x2a - t->x1a), t->y1b = h - (t->y2a - t->y1a);
        } else if (i == 1) {  // top right
            *t = (MosaicTile){xc, imax(yc - h, 0), imin(xc + w, 2 * s), yc, 0, 0, 0, h};
            t->y1b = h - (t->y2a - t->y1a), t->x2b = imin(w, t->x2a - t->x1a);
        } else if (i == 2) {  // bottom left
            *t = (MosaicTile){imax(xc - w, 0), yc, xc, imin(2 * s, yc + h), 0, 0, w, 0};
            t->x1b = w - (t->x2a - t->x1a), t->y2b = imin(t->y2a - t->y1a, h);
        } else {  // bottom right
            *t = (MosaicTile){xc, yc, imin(xc + w, 2 * s), imin(2 * s, yc + h), 0, 0, 0, 0};
            t->x2b = imin(w, t->x2a - t->x1a), t->y2b = imin(t->y2a - t->y1a, h);
        }
    }
    return m;
}

void augment_mosaic_image(const Mosaic *m, const Image tiles[4], Image *out) {
    int side = 2 * m->s;
    image_alloc(out, side, side);
    memset(out->data, AUG_PAD_VALUE, (size_t)side * side * 3);
    for (int i = 0; i < 4; i++) {
        const MosaicTile *t = &m->tiles[i];
        int w = t->x2a - t->x1a;
        for (int y = t->y1a; y < t->y2a; y++)
            memcpy(out->data + ((size_t)y * side + t->x1a) * 3,
                   tiles[i].data + ((size_t)(y - t->y1a + t->y1b) * tiles[i].width + t->x1b) * 3, (size_t)w * 3);
    }
}

int augment_mosaic_boxes(const Mosaic *m, int tile, AugBox *boxes, int n) {
    const MosaicTile *t = &m->tiles[tile];
    float padw = (float)(t->x1a - t->x1b), padh = (float)(t->y1a - t->y1b), side = (float)(2 * m->s);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        AugBox b = boxes[i];
        b.x1 = fminf(fmaxf(b.x1 + padw, 0), side), b.x2 = fminf(fmaxf(b.x2 + padw, 0), side);
        b.y1 = fminf(fmaxf(b.y1 + padh, 0), side), b.y2 = fminf(fmaxf(b.y2 + padh, 0), side);
        if (b.x2 > b.x1 && b.y2 > b.y1) boxes[kept++] = b;
    }
    return kept;
}

// ---- classification ----------------------------------------------------------------------------------

CropBox augment_random_resized_crop(const AugmentSettings *st, int width, int height, uint64_t stream) {
    double area = (double)width * height;
    double log_lo = log(st->crop_ratio_min), log_hi = log(st->crop_ratio_max);
    for (int k = 0; k < 10; k++) {
        double target = area * uniform(stream, 4 * k, st->crop_scale_min, 1.0);
        double aspect = exp(uniform(stream, 4 * k + 1, log_lo, log_hi));
        int w = round_half_even(sqrt(target * aspect)), h = round_half_even(sqrt(target / aspect));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            // torch.randint(0, height - h + 1): an integer offset, uniformly
            int top = (int)(rng_uniform(stream, 4 * k + 2) * (height - h + 1));
            int left = (int)(rng_uniform(stream, 4 * k + 3) * (width - w + 1));
            return (CropBox){left, top, w, h};
        }
    }
    double in_ratio = (double)width / height;
    int w = width, h = height;
    if (in_ratio < st->crop_ratio_min) h = round_half_even(w / st->crop_ratio_min);
    else if (in_ratio > st->crop_ratio_max) w = round_half_even(h * st->crop_ratio_max);
    return (CropBox){(width - w) / 2, (height - h) / 2, w, h};
}

CropBox augment_center_crop(int width, int height, int size) {
    // Resize: the shorter side becomes size, the longer int(size · long / short).
    int short_side = imin(width, height), long_side = imax(width, height);
    int new_long = (int)((double)size * long_side / short_side);
    int new_w = width <= height ? size : new_long, new_h = width <= height ? new_long : size;
    // CenterCrop: offsets int(round((resized - size) / 2)), in resized pixels.
    int left = round_half_even((new_w - size) / 2.0), top = round_half_even((new_h - size) / 2.0);
    double sx = (double)width / new_w, sy = (double)height / new_h;
    return (CropBox){left * sx, top * sy, size * sx, size * sy};
}
