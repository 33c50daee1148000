#include "framework/eval/nms.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"
#include "framework/core/exp_poly.h"
#include "framework/core/sort.h"

NmsConfig nms_config_validation(void) {
    return (NmsConfig){.conf = 0.001f, .iou = 0.7, .multi_label = true, .max_det = 300, .max_nms = 30000,
                       .max_wh = 7680.0f};
}

Detections *detections_create(int64_t n_images, int64_t max_det) {
    YP_CHECK(n_images >= 0 && max_det >= 0);
    Detections *d = yp_calloc(1, sizeof *d);
    d->n_images = n_images;
    d->max_det = max_det;
    size_t slots = (size_t)(n_images * max_det);
    d->count = yp_calloc((size_t)n_images, sizeof *d->count);
    d->boxes = yp_malloc(slots * 4 * sizeof *d->boxes);
    d->scores = yp_malloc(slots * sizeof *d->scores);
    d->cls = yp_malloc(slots * sizeof *d->cls);
    return d;
}

void detections_destroy(Detections *d) {
    if (!d) return;
    free(d->count);
    free(d->boxes);
    free(d->scores);
    free(d->cls);
    free(d);
}

static float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// Position of a float in the total order of floats (-0 and +0 share 0), and back.
static int64_t float_rank(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return (bits & 0x80000000u) ? -(int64_t)(bits & 0x7fffffffu) : (int64_t)bits;
}

static float float_at_rank(int64_t rank) {
    uint32_t bits = rank >= 0 ? (uint32_t)rank : 0x80000000u | (uint32_t)(-rank);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// The largest float whose sigmoid is <= conf, found by bisection over the floats: a logit passes the
// confidence threshold (sigmoid > conf) exactly when it is greater, so logits are compared without
// computing a sigmoid for every one of them.
static float logit_threshold(float conf) {
    int64_t lo = float_rank(-FLT_MAX), hi = float_rank(FLT_MAX);
    if (sigmoid_f(FLT_MAX) <= conf) return FLT_MAX;
    // Invariant: sigmoid(lo) <= conf < sigmoid(hi); sigmoid(-FLT_MAX) = 0 <= conf.
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sigmoid_f(float_at_rank(mid)) <= conf) lo = mid;
        else hi = mid;
    }
    return float_at_rank(lo);
}

// The class scores of one image as nc rows `stride` apart: probabilities (Detect's inference
// output) or logits (its training output). A value passes (its score is > conf) iff it is > pass.
typedef struct ScoreRows {
    const float *rows;
    int64_t stride;
    bool logits;
    float pass;
} ScoreRows;

static float score_of(const ScoreRows *s, float value) { return s->logits ? sigmoid_f(value) : value; }

// Anchors whose best class passes the threshold, ascending, and how many of their classes pass;
// returns the number of anchors. *anchors and *passing (n_anchors entries) are owned by the caller.
static int64_t candidate_anchors(const ScoreRows *s, int64_t nc, int64_t n_anchors, int64_t **anchors,
                                 int32_t **passing) {
    float *best = yp_malloc((size_t)n_anchors * sizeof *best);
    int32_t *count = yp_calloc((size_t)n_anchors, sizeof *count);
    memcpy(best, s->rows, (size_t)n_anchors * sizeof *best);
    float pass = s->pass;
    for (int64_t k = 0; k < nc; k++) {
        const float *row = s->rows + k * s->stride;
        for (int64_t a = 0; a < n_anchors; a++) {
            best[a] = row[a] > best[a] ? row[a] : best[a];
            count[a] += row[a] > pass;
        }
    }
    int64_t n = 0;
    *anchors = yp_malloc((size_t)n_anchors * sizeof **anchors);
    *passing = count;
    for (int64_t a = 0; a < n_anchors; a++)
        if (best[a] > s->pass) (*anchors)[n] = a, count[n++] = count[a];
    free(best);
    return n;
}

// (anchor, class) pairs that enter NMS, in the order torch.where gives them: anchor by anchor,
// classes ascending.
typedef struct Candidates {
    int64_t n;
    float *boxes;   // (n, 4) x1 y1 x2 y2
    float *scores;  // (n)
    int32_t *cls;   // (n)
} Candidates;

static void candidates_alloc(Candidates *c, int64_t capacity) {
    c->n = 0;
    c->boxes = yp_malloc((size_t)capacity * 4 * sizeof *c->boxes);
    c->scores = yp_malloc((size_t)capacity * sizeof *c->scores);
    c->cls = yp_malloc((size_t)capacity * sizeof *c->cls);
}

static void candidates_free(Candidates *c) {
    free(c->boxes);
    free(c->scores);
    free(c->cls);
}

// Ultralytics' xywh2xyxy, in float32 as it computes it.
static void xywh_to_xyxy(const float *xywh, int64_t stride, float xyxy[4]) {
    float half_w = xywh[2 * stride] / 2, half_h = xywh[3 * stride] / 2;
    xyxy[0] = xywh[0] - half_w;
    xyxy[1] = xywh[stride] - half_h;
    xyxy[2] = xywh[0] + half_w;
    xyxy[3] = xywh[stride] + half_h;
}

// Builds the candidates of the n listed anchors, whose boxes are xywh (4, n) and of whose classes
// passing[i] pass the threshold.
static void candidates_select(Candidates *c, const ScoreRows *s, int64_t nc, const int64_t *anchors,
                              const int32_t *passing, int64_t n, const float *xywh, const NmsConfig *cfg) {
    if (cfg->multi_label && nc > 1) {
        // Reading the rows class by class keeps memory access sequential; each anchor's candidates
        // go to its own run, classes ascending, so they come out anchor by anchor.
        int64_t *next = yp_malloc((size_t)n * sizeof *next), total = 0;
        for (int64_t i = 0; i < n; i++) next[i] = total, total += passing[i];
        candidates_alloc(c, total);
        c->n = total;
        for (int64_t k = 0; k < nc; k++) {
            const float *row = s->rows + k * s->stride;
            for (int64_t i = 0; i < n; i++) {
                float value = row[anchors[i]];
                if (!(value > s->pass)) continue;
                int64_t at = next[i]++;
                c->scores[at] = score_of(s, value);
                c->cls[at] = (int32_t)k;
                xywh_to_xyxy(xywh + i, n, c->boxes + 4 * at);
            }
        }
        free(next);
    } else {
        // Best class only: the first highest score (torch.max), kept when > conf.
        float *best = yp_malloc((size_t)n * sizeof *best);
        int32_t *best_cls = yp_calloc((size_t)n, sizeof *best_cls);
        for (int64_t i = 0; i < n; i++) best[i] = score_of(s, s->rows[anchors[i]]);
        for (int64_t k = 1; k < nc; k++) {
            const float *row = s->rows + k * s->stride;
            for (int64_t i = 0; i < n; i++) {
                float score = score_of(s, row[anchors[i]]);
                if (score > best[i]) best[i] = score, best_cls[i] = (int32_t)k;
            }
        }
        candidates_alloc(c, n);
        for (int64_t i = 0; i < n; i++) {
            if (!(best[i] > cfg->conf)) continue;
            c->scores[c->n] = best[i];
            c->cls[c->n] = best_cls[i];
            xywh_to_xyxy(xywh + i, n, c->boxes + 4 * c->n);
            c->n++;
        }
        free(best);
        free(best_cls);
    }
}

// The largest float f with (double)f <= iou: a float IoU is > iou (torchvision compares in double)
// exactly when it is > f.
static float iou_threshold_float(double iou) {
    float f = (float)iou;
    return (double)f > iou ? nextafterf(f, -INFINITY) : f;
}

// Marks the boxes a + 1 .. end - 1 whose IoU with box a is > threshold (float32, as torchvision
// computes it, std::max / std::min included). Branch-free so that it vectorises: re-testing a box
// that is already suppressed changes nothing.
static void suppress_overlapping(const float *restrict x1, const float *restrict y1, const float *restrict x2,
                                 const float *restrict y2, const float *restrict area, int64_t a, int64_t end,
                                 float threshold, int32_t *restrict suppressed) {
    float ax1 = x1[a], ay1 = y1[a], ax2 = x2[a], ay2 = y2[a], a_area = area[a];
    for (int64_t j = a + 1; j < end; j++) {
        float xx1 = ax1 < x1[j] ? x1[j] : ax1, yy1 = ay1 < y1[j] ? y1[j] : ay1;
        float xx2 = x2[j] < ax2 ? x2[j] : ax2, yy2 = y2[j] < ay2 ? y2[j] : ay2;
        float w = 0.0f < xx2 - xx1 ? xx2 - xx1 : 0.0f, h = 0.0f < yy2 - yy1 ? yy2 - yy1 : 0.0f;
        float inter = w * h;
        suppressed[j] |= inter / (a_area + area[j] - inter) > threshold;
    }
}

// torchvision.ops.nms on the class-offset boxes of the max_nms best candidates, with its float32 IoU,
// stopping once max_det are kept (later boxes cannot change the first max_det).
//
// When all boxes span less than max_wh in x, the offset puts every class in its own band: boxes of
// different classes then have zero intersection even after float rounding (rounding is monotone),
// so a box can only suppress boxes of its own class and each kept box is compared with those alone.
// Otherwise every later box is compared, as torchvision does.
static void candidates_suppress(const Candidates *c, const NmsConfig *cfg, Detections *out, int64_t image) {
    int64_t *order = yp_malloc((size_t)c->n * sizeof *order);
    sort_order_descending(c->scores, c->n, order);
    int64_t m = c->n < cfg->max_nms ? c->n : cfg->max_nms;
    float lo = INFINITY, hi = -INFINITY;
    int32_t max_cls = 0;
    for (int64_t i = 0; i < m; i++) {
        const float *b = c->boxes + 4 * order[i];
        lo = fminf(lo, fminf(b[0], b[2]));
        hi = fmaxf(hi, fmaxf(b[0], b[2]));
        max_cls = c->cls[order[i]] > max_cls ? c->cls[order[i]] : max_cls;
    }
    bool by_class = (double)hi - (double)lo < (double)cfg->max_wh;
    int64_t n_groups = by_class ? (int64_t)max_cls + 1 : 1;
    // Groups laid out one after another, each in descending score order; slot[i]: where the i-th best
    // candidate sits.
    int64_t *start = yp_calloc((size_t)n_groups + 1, sizeof *start);
    int64_t *slot = yp_malloc((size_t)m * sizeof *slot);
    for (int64_t i = 0; i < m; i++) start[(by_class ? c->cls[order[i]] : 0) + 1]++;
    for (int64_t g = 0; g < n_groups; g++) start[g + 1] += start[g];
    int64_t *next = yp_malloc((size_t)n_groups * sizeof *next);
    memcpy(next, start, (size_t)n_groups * sizeof *next);
    float *x1 = yp_malloc((size_t)m * 5 * sizeof *x1);  // offset boxes and areas, group by group
    float *y1 = x1 + m, *x2 = y1 + m, *y2 = x2 + m, *area = y2 + m;
    int32_t *suppressed = yp_calloc((size_t)m + 1, sizeof *suppressed);
    for (int64_t i = 0; i < m; i++) {
        const float *b = c->boxes + 4 * order[i];
        float offset = (float)c->cls[order[i]] * cfg->max_wh;
        int64_t at = slot[i] = next[by_class ? c->cls[order[i]] : 0]++;
        x1[at] = b[0] + offset, y1[at] = b[1] + offset, x2[at] = b[2] + offset, y2[at] = b[3] + offset;
        area[at] = (x2[at] - x1[at]) * (y2[at] - y1[at]);
    }
    float threshold = iou_threshold_float(cfg->iou);
    int64_t kept = 0, slot0 = image * out->max_det;
    for (int64_t i = 0; i < m && kept < cfg->max_det; i++) {
        int64_t a = slot[i];
        if (suppressed[a]) continue;
        int64_t src = order[i], dst = slot0 + kept++;
        memcpy(out->boxes + 4 * dst, c->boxes + 4 * src, 4 * sizeof *out->boxes);
        out->scores[dst] = c->scores[src];
        out->cls[dst] = c->cls[src];
        if (kept == cfg->max_det) break;
        int64_t end = start[(by_class ? c->cls[src] : 0) + 1];
        suppress_overlapping(x1, y1, x2, y2, area, a, end, threshold, suppressed);
    }
    out->count[image] = kept;
    free(order);
    free(start);
    free(slot);
    free(next);
    free(x1);
    free(suppressed);
}

static void check_config(const NmsConfig *cfg, const Detections *out) {
    YP_CHECK(cfg->conf >= 0.0f && cfg->conf <= 1.0f && cfg->iou >= 0.0 && cfg->iou <= 1.0);
    YP_CHECK(cfg->max_det >= 0 && cfg->max_det <= out->max_det && cfg->max_nms >= 0);
}

// Candidates of the n listed anchors (boxes xywh (4, n)) through selection and suppression into slot
// `image` of out.
static void anchors_nms(const ScoreRows *s, int64_t nc, const int64_t *anchors, const int32_t *passing, int64_t n,
                        const float *xywh, const NmsConfig *cfg, Detections *out, int64_t image) {
    Candidates c;
    candidates_select(&c, s, nc, anchors, passing, n, xywh, cfg);
    candidates_suppress(&c, cfg, out, image);
    candidates_free(&c);
}

void nms_predictions(const float *pred, int64_t n_anchors, int64_t nc, const NmsConfig *cfg, Detections *out,
                     int64_t image) {
    check_config(cfg, out);
    YP_CHECK(nc >= 1 && n_anchors >= 0 && image >= 0 && image < out->n_images);
    ScoreRows s = {.rows = pred + 4 * n_anchors, .stride = n_anchors, .logits = false, .pass = cfg->conf};
    int64_t *anchors;
    int32_t *passing;
    int64_t n = candidate_anchors(&s, nc, n_anchors, &anchors, &passing);
    float *xywh = yp_malloc((size_t)n * 4 * sizeof *xywh);  // (4, n)
    for (int r = 0; r < 4; r++)
        for (int64_t i = 0; i < n; i++) xywh[r * n + i] = pred[r * n_anchors + anchors[i]];
    anchors_nms(&s, nc, anchors, passing, n, xywh, cfg, out, image);
    free(xywh);
    free(anchors);
    free(passing);
}

struct DetectDecoder {
    int64_t nc, reg_max, n_anchors;
    float *anchor_xy;  // (A, 2) anchor centres in grid units (make_anchors' x + 0.5, y + 0.5)
    float *stride;     // (A)
};

DetectDecoder *detect_decoder_create(const DetectLevelSize *levels, int n_levels, int64_t nc, int64_t reg_max) {
    YP_CHECK(n_levels >= 1 && nc >= 1 && reg_max >= 1);
    DetectDecoder *dec = yp_calloc(1, sizeof *dec);
    dec->nc = nc;
    dec->reg_max = reg_max;
    for (int l = 0; l < n_levels; l++) {
        YP_CHECK(levels[l].h >= 1 && levels[l].w >= 1 && levels[l].stride >= 1);
        dec->n_anchors += levels[l].h * levels[l].w;
    }
    dec->anchor_xy = yp_malloc((size_t)dec->n_anchors * 2 * sizeof *dec->anchor_xy);
    dec->stride = yp_malloc((size_t)dec->n_anchors * sizeof *dec->stride);
    int64_t a = 0;
    for (int l = 0; l < n_levels; l++)
        for (int64_t y = 0; y < levels[l].h; y++)
            for (int64_t x = 0; x < levels[l].w; x++, a++) {
                dec->anchor_xy[2 * a] = (float)x + 0.5f;
                dec->anchor_xy[2 * a + 1] = (float)y + 0.5f;
                dec->stride[a] = (float)levels[l].stride;
            }
    return dec;
}

DetectDecoder *detect_decoder_for_graph(const Graph *g, int64_t h, int64_t w, int64_t nc) {
    DetectLevelSize levels[sizeof g->strides / sizeof g->strides[0]];
    YP_CHECK(g->n_strides > 0 && g->n_strides <= (int)(sizeof levels / sizeof levels[0]));
    for (int i = 0; i < g->n_strides; i++)
        levels[i] = (DetectLevelSize){.h = h / g->strides[i], .w = w / g->strides[i], .stride = g->strides[i]};
    return detect_decoder_create(levels, g->n_strides, nc, g->reg_max);
}

void detect_decoder_destroy(DetectDecoder *dec) {
    if (!dec) return;
    free(dec->anchor_xy);
    free(dec->stride);
    free(dec);
}

int64_t detect_decoder_anchors(const DetectDecoder *dec) { return dec->n_anchors; }

// Boxes of n anchors of one image (anchors[i], or i itself when anchors is NULL) into xywh (4, n)
// pixels: DFL's softmax expectation per side (ltrb, grid units), dist2bbox, x stride.
static void decoder_boxes(const DetectDecoder *dec, const float *raw, const int64_t *anchors, int64_t n,
                          float *xywh) {
    int64_t A = dec->n_anchors, R = dec->reg_max;
    // One side's logits of the n anchors, contiguous (R, n), then the softmax sums.
    float *logits = yp_malloc((size_t)n * (size_t)(R + 2) * sizeof *logits);
    float *sum = logits + R * n, *weighted = sum + n;
    for (int side = 0; side < 4; side++) {
        for (int64_t k = 0; k < R; k++) {
            const float *row = raw + (side * R + k) * A;
            float *dst = logits + k * n;
            if (anchors)
                for (int64_t i = 0; i < n; i++) dst[i] = row[anchors[i]];
            else
                memcpy(dst, row, (size_t)n * sizeof *dst);
        }
        float *dist = xywh + side * n;  // the side's distance, replaced by the box below
        memcpy(dist, logits, (size_t)n * sizeof *dist);
        if (R == 1) continue;  // no DFL: Ultralytics' nn.Identity
        for (int64_t k = 1; k < R; k++)  // dist holds the maximum first (softmax's shift)
            for (int64_t i = 0; i < n; i++) dist[i] = logits[k * n + i] > dist[i] ? logits[k * n + i] : dist[i];
        memset(sum, 0, (size_t)n * 2 * sizeof *sum);
        for (int64_t k = 0; k < R; k++)
            for (int64_t i = 0; i < n; i++) {
                float e = exp_poly(logits[k * n + i] - dist[i]);  // vectorizes, unlike expf
                sum[i] += e;
                weighted[i] += (float)k * e;
            }
        for (int64_t i = 0; i < n; i++) dist[i] = weighted[i] / sum[i];
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t a = anchors ? anchors[i] : i;
        float ax = dec->anchor_xy[2 * a], ay = dec->anchor_xy[2 * a + 1], s = dec->stride[a];
        float x1 = ax - xywh[i], y1 = ay - xywh[n + i], x2 = ax + xywh[2 * n + i], y2 = ay + xywh[3 * n + i];
        xywh[i] = (x1 + x2) / 2 * s;
        xywh[n + i] = (y1 + y2) / 2 * s;
        xywh[2 * n + i] = (x2 - x1) * s;
        xywh[3 * n + i] = (y2 - y1) * s;
    }
    free(logits);
}

void detect_decoder_predict(const DetectDecoder *dec, const float *raw, float *pred) {
    int64_t A = dec->n_anchors;
    decoder_boxes(dec, raw, NULL, A, pred);
    const float *logits = raw + 4 * dec->reg_max * A;
    for (int64_t i = 0; i < dec->nc * A; i++) pred[4 * A + i] = sigmoid_f(logits[i]);
}

void detect_decoder_nms(const DetectDecoder *dec, const float *raw, int64_t n_images, const NmsConfig *cfg,
                        Detections *out) {
    int64_t A = dec->n_anchors, channels = 4 * dec->reg_max + dec->nc;
    check_config(cfg, out);
    YP_CHECK(n_images <= out->n_images);
    float pass = logit_threshold(cfg->conf);
#pragma omp parallel for schedule(dynamic)
    for (int64_t image = 0; image < n_images; image++) {
        const float *x = raw + image * channels * A;
        ScoreRows s = {.rows = x + 4 * dec->reg_max * A, .stride = A, .logits = true, .pass = pass};
        int64_t *anchors;
        int32_t *passing;
        int64_t n = candidate_anchors(&s, dec->nc, A, &anchors, &passing);
        float *xywh = yp_malloc((size_t)n * 4 * sizeof *xywh);
        decoder_boxes(dec, x, anchors, n, xywh);
        anchors_nms(&s, dec->nc, anchors, passing, n, xywh, cfg, out, image);
        free(xywh);
        free(anchors);
        free(passing);
    }
}
