// Ultralytics 8.4's v8DetectionLoss (ultralytics/utils/loss.py) with its TaskAlignedAssigner
// (ultralytics/utils/tal.py), written per image so that images run in parallel: the assigner's
// dense (gts x anchors) tensors become a pass over the anchors per ground truth that keeps only
// the top-k list, and every pair value needed later is recomputed by the same function, so it is
// bit-identical to the value the selection saw.
//
// Precision: geometry, the assigner, the box and DFL terms run in double from the float inputs;
// the class BCE over all anchors x classes runs in float with double sums.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "layers/loss.h"

static const double ciou_eps = 1e-7;  // bbox_iou's default epsilon (the assigner's is cfg.eps)

typedef struct GtBox {
    double x1, y1, x2, y2;          // pixels, as Ultralytics' preprocess computes them
    double cx1, cy1, cx2, cy2;      // candidate region: sides under stride_val widened to it
    int32_t cls;
    bool valid;                     // Ultralytics' mask_gt: x1 + y1 + x2 + y2 > 0
} GtBox;

typedef struct TopkEntry {
    int64_t anchor;
    double metric;
    bool candidate;  // anchor centre inside the ground truth's candidate region
} TopkEntry;

// Work memory of one OpenMP thread.
typedef struct ThreadScratch {
    double *box;        // (A, 4) decoded boxes in grid units, valid where decoded[a]
    uint8_t *decoded;   // (A)
    int32_t *claims;    // (A) ground truths whose top-k list holds the anchor
    double *prob, *log_prob;  // (4, reg_max) one anchor's bin probabilities and their logarithms
    TopkEntry *topk;    // (topk) one ground truth's best anchors
} ThreadScratch;

struct DetectLoss {
    DetectLossConfig cfg;
    int64_t n_anchors, n_channels, max_batch;
    double imgsz_h, imgsz_w;  // level 0's grid times its stride, as Ultralytics derives imgsz
    double stride_val;        // candidate regions are at least this wide (stride of level 1)
    double *anchor_x, *anchor_y, *anchor_stride;  // (A) centres in grid units, strides

    // The assignment, written by detect_loss_assign for detect_loss_evaluate.
    int64_t batch_n, n_targets;
    int64_t *gt_start;     // (max_batch + 1) each image's first ground truth in gts
    int64_t *gt_fill;      // (max_batch) placement cursor while grouping targets
    int32_t *assigned;     // (max_batch, A) ground truth (index within the image) or -1
    double *target_score;  // (max_batch, A) normalised alignment of the assigned ground truth
    double *score_sum;     // (max_batch) sum of target_score per image
    int64_t *n_fg;         // (max_batch) foreground anchors per image
    double *image_sums;    // (max_batch, 3) box, cls, dfl sums before gains and normalisation

    int64_t gt_capacity;   // grown when a batch has more ground truths
    GtBox *gts;            // (gt_capacity) grouped by image
    double *pos_overlap, *pos_align;  // (gt_capacity) maxima over each ground truth's anchors

    int n_slots;
    ThreadScratch *slots;  // (n_slots)
};

DetectLossConfig detect_loss_config_default(int64_t nc, int64_t reg_max) {
    return (DetectLossConfig){.nc = nc, .reg_max = reg_max, .box_gain = 7.5, .cls_gain = 0.5, .dfl_gain = 1.5,
                              .topk = 10, .alpha = 0.5, .beta = 6.0, .eps = 1e-9};
}

static bool config_check(const DetectLossConfig *cfg, int64_t max_batch, int64_t *n_anchors, Error *err) {
    if (cfg->nc < 1) return error_set(err, "detect loss: nc %lld must be at least 1", (long long)cfg->nc);
    if (cfg->reg_max < 2)
        return error_set(err, "detect loss: reg_max %lld: only distribution boxes (reg_max > 1) are supported",
                         (long long)cfg->reg_max);
    if (cfg->n_levels < 1 || cfg->n_levels > DETECT_LOSS_MAX_LEVELS)
        return error_set(err, "detect loss: %d levels, expected 1 to %d", cfg->n_levels, DETECT_LOSS_MAX_LEVELS);
    if (max_batch < 1) return error_set(err, "detect loss: max_batch %lld must be at least 1", (long long)max_batch);
    *n_anchors = 0;
    for (int l = 0; l < cfg->n_levels; l++) {
        const DetectLossLevel *lv = &cfg->levels[l];
        if (lv->h < 1 || lv->w < 1 || lv->stride < 1)
            return error_set(err, "detect loss: level %d has grid %lldx%lld and stride %lld, all must be positive", l,
                             (long long)lv->h, (long long)lv->w, (long long)lv->stride);
        *n_anchors += lv->h * lv->w;
    }
    if (cfg->topk < 1 || cfg->topk > *n_anchors)  // torch.topk fails beyond the anchor count
        return error_set(err, "detect loss: topk %lld must be between 1 and the %lld anchors", (long long)cfg->topk,
                         (long long)*n_anchors);
    return true;
}

bool detect_loss_create(const DetectLossConfig *cfg, int64_t max_batch, DetectLoss **out, Error *err) {
    int64_t A = 0;
    if (!config_check(cfg, max_batch, &A, err)) return false;
    DetectLoss *L = yp_calloc(1, sizeof *L);
    L->cfg = *cfg;
    L->n_anchors = A;
    L->n_channels = 4 * cfg->reg_max + cfg->nc;
    L->max_batch = max_batch;
    L->imgsz_h = (double)(cfg->levels[0].h * cfg->levels[0].stride);
    L->imgsz_w = (double)(cfg->levels[0].w * cfg->levels[0].stride);
    L->stride_val = (double)cfg->levels[cfg->n_levels > 1 ? 1 : 0].stride;
    L->anchor_x = yp_malloc((size_t)A * sizeof *L->anchor_x);
    L->anchor_y = yp_malloc((size_t)A * sizeof *L->anchor_y);
    L->anchor_stride = yp_malloc((size_t)A * sizeof *L->anchor_stride);
    int64_t a = 0;
    for (int l = 0; l < cfg->n_levels; l++)
        for (int64_t y = 0; y < cfg->levels[l].h; y++)
            for (int64_t x = 0; x < cfg->levels[l].w; x++, a++) {
                L->anchor_x[a] = (double)x + 0.5;
                L->anchor_y[a] = (double)y + 0.5;
                L->anchor_stride[a] = (double)cfg->levels[l].stride;
            }
    size_t nb = (size_t)max_batch;
    L->gt_start = yp_calloc(nb + 1, sizeof *L->gt_start);
    L->gt_fill = yp_calloc(nb, sizeof *L->gt_fill);
    L->assigned = yp_malloc(nb * (size_t)A * sizeof *L->assigned);
    L->target_score = yp_malloc(nb * (size_t)A * sizeof *L->target_score);
    L->score_sum = yp_calloc(nb, sizeof *L->score_sum);
    L->n_fg = yp_calloc(nb, sizeof *L->n_fg);
    L->image_sums = yp_calloc(nb * 3, sizeof *L->image_sums);
    int threads = omp_get_max_threads();
    L->n_slots = threads < max_batch ? threads : (int)max_batch;
    L->slots = yp_calloc((size_t)L->n_slots, sizeof *L->slots);
    for (int s = 0; s < L->n_slots; s++) {
        ThreadScratch *t = &L->slots[s];
        t->box = yp_malloc((size_t)A * 4 * sizeof *t->box);
        t->decoded = yp_malloc((size_t)A);
        t->claims = yp_malloc((size_t)A * sizeof *t->claims);
        t->prob = yp_malloc((size_t)(4 * cfg->reg_max) * sizeof *t->prob);
        t->log_prob = yp_malloc((size_t)(4 * cfg->reg_max) * sizeof *t->log_prob);
        t->topk = yp_malloc((size_t)cfg->topk * sizeof *t->topk);
    }
    *out = L;
    return true;
}

void detect_loss_destroy(DetectLoss *loss) {
    if (!loss) return;
    for (int s = 0; s < loss->n_slots; s++) {
        free(loss->slots[s].box);
        free(loss->slots[s].decoded);
        free(loss->slots[s].claims);
        free(loss->slots[s].prob);
        free(loss->slots[s].log_prob);
        free(loss->slots[s].topk);
    }
    free(loss->slots);
    free(loss->anchor_x);
    free(loss->anchor_y);
    free(loss->anchor_stride);
    free(loss->gt_start);
    free(loss->gt_fill);
    free(loss->assigned);
    free(loss->target_score);
    free(loss->score_sum);
    free(loss->n_fg);
    free(loss->image_sums);
    free(loss->gts);
    free(loss->pos_overlap);
    free(loss->pos_align);
    free(loss);
}

int64_t detect_loss_anchors(const DetectLoss *loss) { return loss->n_anchors; }

// ---- geometry ------------------------------------------------------------------------------------

// Share of d max(a, b) that goes to a, as PyTorch's maximum/minimum backward (ties split it).
static double max_share(double a, double b) { return a > b ? 1.0 : a == b ? 0.5 : 0.0; }

// bbox_iou(box1, box2, xywh=False, CIoU=True) on xyxy boxes, in Ultralytics' order of operations.
// With d_box1 non-NULL, adds grad * d CIoU / d box1 to it; alpha is a constant there, as under
// Ultralytics' no_grad.
static double box_ciou(const double b1[4], const double b2[4], double grad, double d_b1[4]) {
    const double eps = ciou_eps, k = 4.0 / (M_PI * M_PI);
    double w1 = b1[2] - b1[0], h1 = b1[3] - b1[1] + eps;
    double w2 = b2[2] - b2[0], h2 = b2[3] - b2[1] + eps;
    double iw = fmin(b1[2], b2[2]) - fmax(b1[0], b2[0]), ih = fmin(b1[3], b2[3]) - fmax(b1[1], b2[1]);
    double iw_c = iw > 0 ? iw : 0, ih_c = ih > 0 ? ih : 0;
    double inter = iw_c * ih_c;
    double uni = w1 * h1 + w2 * h2 - inter + eps;
    double iou = inter / uni;
    double cw = fmax(b1[2], b2[2]) - fmin(b1[0], b2[0]), ch = fmax(b1[3], b2[3]) - fmin(b1[1], b2[1]);
    double c2 = cw * cw + ch * ch + eps;
    double dx = b2[0] + b2[2] - b1[0] - b1[2], dy = b2[1] + b2[3] - b1[1] - b1[3];
    double rho2 = (dx * dx + dy * dy) / 4;
    double datan = atan(w2 / h2) - atan(w1 / h1);
    double v = k * (datan * datan);
    double alpha = v / (1 - iou + v + eps);
    double ciou = iou - (rho2 / c2 + v * alpha);
    if (!d_b1) return ciou;

    double g_rho2 = -grad / c2, g_c2 = grad * rho2 / (c2 * c2), g_v = -grad * alpha;
    double g_inter = grad / uni, g_uni = -grad * inter / (uni * uni);
    double g_w1 = g_uni * h1, g_h1 = g_uni * w1;
    g_inter -= g_uni;
    double g_iw = iw > 0 ? g_inter * ih_c : 0, g_ih = ih > 0 ? g_inter * iw_c : 0;  // clamp passes above 0
    double g_cw = 2 * cw * g_c2, g_ch = 2 * ch * g_c2;
    double r = w1 / h1, g_r = -2 * k * datan * g_v / (1 + r * r);  // d atan(r) = dr / (1 + r^2)
    g_w1 += g_r / h1;
    g_h1 -= g_r * w1 / (h1 * h1);
    double g_dx = -g_rho2 * dx / 2, g_dy = -g_rho2 * dy / 2;  // d rho2 / d b1x1 = -dx / 2
    d_b1[0] += -g_w1 + g_dx - g_iw * max_share(b1[0], b2[0]) - g_cw * max_share(b2[0], b1[0]);
    d_b1[1] += -g_h1 + g_dy - g_ih * max_share(b1[1], b2[1]) - g_ch * max_share(b2[1], b1[1]);
    d_b1[2] += g_w1 + g_dx + g_iw * max_share(b2[2], b1[2]) + g_cw * max_share(b1[2], b2[2]);
    d_b1[3] += g_h1 + g_dy + g_ih * max_share(b2[3], b1[3]) + g_ch * max_share(b1[3], b2[3]);
    return ciou;
}

// Softmax over each side's reg_max bins (prob, (4, reg_max); with log_prob, also its logarithm as
// log_softmax computes it) and its expectation against 0..reg_max-1: the left, top, right, bottom
// distances in grid units.
static void dist_decode(const DetectLoss *L, const float *pred_i, int64_t a, double *prob, double *log_prob,
                        double dist[4]) {
    int64_t R = L->cfg.reg_max, A = L->n_anchors;
    for (int s = 0; s < 4; s++) {
        const float *x = pred_i + s * R * A + a;
        double *p = prob + s * R;
        double top = x[0], sum = 0, e = 0;
        for (int64_t k = 1; k < R; k++) top = fmax(top, (double)x[k * A]);
        for (int64_t k = 0; k < R; k++) sum += p[k] = exp((double)x[k * A] - top);
        for (int64_t k = 0; k < R; k++) {
            p[k] /= sum;
            e += p[k] * (double)k;
        }
        dist[s] = e;
        if (log_prob)
            for (int64_t k = 0; k < R; k++) log_prob[s * R + k] = ((double)x[k * A] - top) - log(sum);
    }
}

// The predicted box of anchor a (xyxy, grid units), decoded once per image and thread.
static const double *anchor_box(const DetectLoss *L, ThreadScratch *t, const float *pred_i, int64_t a) {
    double *b = t->box + 4 * a;
    if (!t->decoded[a]) {
        double d[4];
        dist_decode(L, pred_i, a, t->prob, NULL, d);
        b[0] = L->anchor_x[a] - d[0];
        b[1] = L->anchor_y[a] - d[1];
        b[2] = L->anchor_x[a] + d[2];
        b[3] = L->anchor_y[a] + d[3];
        t->decoded[a] = 1;
    }
    return b;
}

// select_candidates_in_gts: the anchor centre (pixels) strictly inside the candidate region.
static bool gt_has_candidate(const DetectLoss *L, const GtBox *g, int64_t a) {
    double x = L->anchor_x[a] * L->anchor_stride[a], y = L->anchor_y[a] * L->anchor_stride[a], eps = L->cfg.eps;
    return g->valid && x - g->cx1 > eps && y - g->cy1 > eps && g->cx2 - x > eps && g->cy2 - y > eps;
}

// The assigner's overlaps and align_metric entries for (g, a): for candidates, CIoU(gt, predicted
// box in pixels) clamped at 0, and sigmoid(class score)^alpha * overlap^beta; 0 elsewhere. Returns
// whether a is a candidate of g.
static bool pair_metric(const DetectLoss *L, ThreadScratch *t, const float *pred_i, const GtBox *g, int64_t a,
                        double *overlap, double *metric) {
    *overlap = *metric = 0;
    if (!gt_has_candidate(L, g, a)) return false;
    const double *b = anchor_box(L, t, pred_i, a);
    double s = L->anchor_stride[a];
    double pd[4] = {b[0] * s, b[1] * s, b[2] * s, b[3] * s}, gt[4] = {g->x1, g->y1, g->x2, g->y2};
    double iou = box_ciou(gt, pd, 0, NULL);
    *overlap = iou > 0 ? iou : 0;
    double logit = pred_i[(4 * L->cfg.reg_max + g->cls) * L->n_anchors + a];
    double score = 1 / (1 + exp(-logit));
    *metric = pow(score, L->cfg.alpha) * pow(*overlap, L->cfg.beta);
    return true;
}

// ---- assignment ----------------------------------------------------------------------------------

// Ultralytics' preprocess (normalised xywh to pixel xyxy) and the candidate region of
// select_candidates_in_gts (xyxy2xywh, sides under stride_val raised to it, xywh2xyxy).
static GtBox gt_box_make(const DetectLoss *L, const TargetBox *t) {
    GtBox g = {.cls = t->cls};
    double cx = (double)t->cx * L->imgsz_w, cy = (double)t->cy * L->imgsz_h;
    double hw = (double)t->w * L->imgsz_w / 2, hh = (double)t->h * L->imgsz_h / 2;
    g.x1 = cx - hw, g.y1 = cy - hh, g.x2 = cx + hw, g.y2 = cy + hh;
    g.valid = g.x1 + g.y1 + g.x2 + g.y2 > 0;
    double mx = (g.x1 + g.x2) / 2, my = (g.y1 + g.y2) / 2, w = g.x2 - g.x1, h = g.y2 - g.y1;
    if (g.valid && w < L->stride_val) w = L->stride_val;
    if (g.valid && h < L->stride_val) h = L->stride_val;
    g.cx1 = mx - w / 2, g.cy1 = my - h / 2, g.cx2 = mx + w / 2, g.cy2 = my + h / 2;
    return g;
}

// select_topk_candidates for one ground truth: the topk largest align metrics over all anchors
// (non-candidates count as 0). torch.topk leaves the order of equal values unspecified; we take
// the lower anchor index first. That matters only where fewer than topk candidates have a positive
// metric: the zero-metric anchors then chosen carry a target score of 0, but they count as
// foreground, and one shared with another ground truth goes through the highest-overlap rule.
static void gt_select_topk(const DetectLoss *L, ThreadScratch *t, const float *pred_i, const GtBox *g,
                           TopkEntry *list) {
    int64_t k = L->cfg.topk, n = 0;
    for (int64_t a = 0; a < L->n_anchors; a++) {
        double overlap, metric;
        bool candidate = pair_metric(L, t, pred_i, g, a, &overlap, &metric);
        if (n == k && !(metric > list[k - 1].metric)) continue;
        int64_t p = n < k ? n++ : k - 1;
        for (; p > 0 && list[p - 1].metric < metric; p--) list[p] = list[p - 1];
        list[p] = (TopkEntry){.anchor = a, .metric = metric, .candidate = candidate};
    }
}

// TaskAlignedAssigner._forward for image i: positives are candidates in their ground truth's top-k;
// an anchor claimed twice goes to the ground truth of highest overlap (select_highest_overlaps,
// over all of the image's ground truths, first on ties); target scores are the alignment scaled
// per ground truth to its best overlap.
static void image_assign(DetectLoss *L, ThreadScratch *t, int64_t i, const float *pred_i) {
    int64_t A = L->n_anchors, g0 = L->gt_start[i], n_gt = L->gt_start[i + 1] - g0;
    const GtBox *gts = L->gts + g0;
    int32_t *assigned = L->assigned + i * A;
    double *score = L->target_score + i * A;
    double *pos_overlap = L->pos_overlap + g0, *pos_align = L->pos_align + g0;
    memset(t->decoded, 0, (size_t)A);
    memset(t->claims, 0, (size_t)A * sizeof *t->claims);
    for (int64_t a = 0; a < A; a++) assigned[a] = -1, score[a] = 0;

    for (int64_t g = 0; g < n_gt; g++) {
        if (!gts[g].valid) continue;  // mask_gt removes the whole top-k row
        gt_select_topk(L, t, pred_i, &gts[g], t->topk);
        for (int64_t j = 0; j < L->cfg.topk; j++)
            if (t->topk[j].candidate) t->claims[t->topk[j].anchor]++, assigned[t->topk[j].anchor] = (int32_t)g;
    }
    for (int64_t a = 0; a < A; a++) {
        if (t->claims[a] < 2) continue;
        double best = -1;
        for (int64_t g = 0; g < n_gt; g++) {
            double overlap, metric;
            pair_metric(L, t, pred_i, &gts[g], a, &overlap, &metric);
            if (overlap > best) best = overlap, assigned[a] = (int32_t)g;
        }
    }

    for (int64_t g = 0; g < n_gt; g++) pos_overlap[g] = pos_align[g] = 0;
    int64_t n_fg = 0;
    for (int64_t a = 0; a < A; a++) {
        if (assigned[a] < 0) continue;
        const GtBox *g = &gts[assigned[a]];
        double overlap, metric;
        pair_metric(L, t, pred_i, g, a, &overlap, &metric);
        pos_overlap[assigned[a]] = fmax(pos_overlap[assigned[a]], overlap);
        pos_align[assigned[a]] = fmax(pos_align[assigned[a]], metric);
        score[a] = metric;  // normalised below, once the maxima are known
        n_fg++;
    }
    double sum = 0;
    for (int64_t a = 0; a < A; a++)
        if (assigned[a] >= 0) {
            score[a] = score[a] * pos_overlap[assigned[a]] / (pos_align[assigned[a]] + L->cfg.eps);
            sum += score[a];
        }
    L->score_sum[i] = sum;
    L->n_fg[i] = n_fg;
}

// Groups the targets by image (stable, so grouped input keeps its order) into L->gts, growing the
// per-ground-truth buffers when this batch has more than ever before.
static void targets_group(DetectLoss *L, int64_t batch_n, const TargetBox *targets, int64_t n_targets) {
    if (n_targets > L->gt_capacity) {
        L->gt_capacity = n_targets;
        size_t n = (size_t)n_targets;
        L->gts = yp_realloc(L->gts, n * sizeof *L->gts);
        L->pos_overlap = yp_realloc(L->pos_overlap, n * sizeof *L->pos_overlap);
        L->pos_align = yp_realloc(L->pos_align, n * sizeof *L->pos_align);
    }
    memset(L->gt_start, 0, (size_t)(batch_n + 1) * sizeof *L->gt_start);
    for (int64_t j = 0; j < n_targets; j++) {
        YP_CHECK(targets[j].image >= 0 && targets[j].image < batch_n);
        YP_CHECK(targets[j].cls >= 0 && targets[j].cls < L->cfg.nc);
        L->gt_start[targets[j].image + 1]++;
    }
    for (int64_t i = 0; i < batch_n; i++) {
        L->gt_start[i + 1] += L->gt_start[i];
        L->gt_fill[i] = L->gt_start[i];
    }
    for (int64_t j = 0; j < n_targets; j++) L->gts[L->gt_fill[targets[j].image]++] = gt_box_make(L, &targets[j]);
}

void detect_loss_assign(DetectLoss *loss, int64_t batch_n, const float *pred, const TargetBox *targets,
                        int64_t n_targets) {
    YP_CHECK(batch_n >= 1 && batch_n <= loss->max_batch && n_targets >= 0);
    loss->batch_n = batch_n;
    loss->n_targets = n_targets;
    targets_group(loss, batch_n, targets, n_targets);
    int64_t per_image = loss->n_channels * loss->n_anchors;
#pragma omp parallel for num_threads(loss->n_slots) schedule(dynamic, 1)
    for (int64_t i = 0; i < batch_n; i++)
        image_assign(loss, &loss->slots[omp_get_thread_num()], i, pred + i * per_image);
}

// ---- loss and gradient ---------------------------------------------------------------------------

// Image i's unnormalised sums (box, cls, dfl) into L->image_sums; with dpred_i, the gradient of the
// total, whose factor batch_n / S arrives as `scale`.
static void image_evaluate(DetectLoss *L, ThreadScratch *t, int64_t i, const float *pred_i, float *dpred_i,
                           double scale) {
    const DetectLossConfig *cfg = &L->cfg;
    int64_t A = L->n_anchors, R = cfg->reg_max;
    const int32_t *assigned = L->assigned + i * A;
    const double *score = L->target_score + i * A;
    const GtBox *gts = L->gts + L->gt_start[i];

    // BCE-with-logits against target scores (one-hot class times score) over every anchor and class.
    double cls_sum = 0;
    float cls_scale = (float)(cfg->cls_gain * scale);
    for (int64_t c = 0; c < cfg->nc; c++) {
        const float *x = pred_i + (4 * R + c) * A;
        float *dx = dpred_i ? dpred_i + (4 * R + c) * A : NULL;
        double row = 0;
        for (int64_t a = 0; a < A; a++) {
            float target = assigned[a] >= 0 && gts[assigned[a]].cls == c ? (float)score[a] : 0.0f;
            float e = expf(-fabsf(x[a]));
            row += (double)(fmaxf(x[a], 0.0f) - x[a] * target + log1pf(e));
            if (dx) dx[a] = cls_scale * ((x[a] >= 0 ? 1.0f : e) / (1.0f + e) - target);
        }
        cls_sum += row;
    }

    // CIoU box loss and DFL on foreground anchors, both weighted by the anchor's target score.
    if (dpred_i) memset(dpred_i, 0, (size_t)(4 * R * A) * sizeof *dpred_i);
    double box_sum = 0, dfl_sum = 0, side_max = (double)(R - 1) - 0.01;
    for (int64_t a = 0; a < A; a++) {
        if (assigned[a] < 0) continue;
        const GtBox *g = &gts[assigned[a]];
        double w = score[a], d[4], s = L->anchor_stride[a], ax = L->anchor_x[a], ay = L->anchor_y[a];
        dist_decode(L, pred_i, a, t->prob, t->log_prob, d);
        double pb[4] = {ax - d[0], ay - d[1], ax + d[2], ay + d[3]};
        double tb[4] = {g->x1 / s, g->y1 / s, g->x2 / s, g->y2 / s};
        double d_pb[4] = {0, 0, 0, 0};
        box_sum += (1.0 - box_ciou(pb, tb, -w, d_pb)) * w;
        // Distances to the target (bbox2dist), clamped below the last bin so floor + 1 is a bin.
        double target[4] = {ax - tb[0], ay - tb[1], tb[2] - ax, tb[3] - ay};
        double d_dist[4] = {-d_pb[0], -d_pb[1], d_pb[2], d_pb[3]};  // x1 = ax - l, ..., y2 = ay + b
        double ce_sum = 0;
        for (int side = 0; side < 4; side++) {
            const double *p = t->prob + side * R, *log_p = t->log_prob + side * R;
            double tgt = fmin(fmax(target[side], 0.0), side_max);
            int64_t lo = (int64_t)tgt;
            double w_lo = (double)(lo + 1) - tgt, w_hi = 1 - w_lo;
            ce_sum += -(log_p[lo] * w_lo + log_p[lo + 1] * w_hi);
            if (!dpred_i) continue;
            float *dx = dpred_i + side * R * A + a;
            double g_box = cfg->box_gain * scale * d_dist[side], g_dfl = cfg->dfl_gain * scale * w / 4;
            for (int64_t k = 0; k < R; k++) {
                double onehot = (k == lo ? w_lo : 0) + (k == lo + 1 ? w_hi : 0);
                dx[k * A] = (float)(g_box * p[k] * ((double)k - d[side]) + g_dfl * (p[k] - onehot));
            }
        }
        dfl_sum += ce_sum / 4 * w;
    }
    double *sums = L->image_sums + 3 * i;
    sums[0] = box_sum, sums[1] = cls_sum, sums[2] = dfl_sum;
}

double detect_loss_evaluate(DetectLoss *loss, const float *pred, float *dpred, DetectLossParts *parts) {
    YP_CHECK(loss->batch_n >= 1);  // detect_loss_assign ran
    int64_t B = loss->batch_n, per_image = loss->n_channels * loss->n_anchors;
    double score_sum = 0, sums[3] = {0, 0, 0};
    int64_t n_fg = 0;
    for (int64_t i = 0; i < B; i++) score_sum += loss->score_sum[i], n_fg += loss->n_fg[i];
    double norm = score_sum > 1 ? score_sum : 1;  // target_scores.sum().clamp(min=1)
#pragma omp parallel for num_threads(loss->n_slots) schedule(dynamic, 1)
    for (int64_t i = 0; i < B; i++)
        image_evaluate(loss, &loss->slots[omp_get_thread_num()], i, pred + i * per_image,
                       dpred ? dpred + i * per_image : NULL, (double)B / norm);
    for (int64_t i = 0; i < B; i++)
        for (int j = 0; j < 3; j++) sums[j] += loss->image_sums[3 * i + j];
    DetectLossParts p = {.box = loss->cfg.box_gain * sums[0] / norm, .cls = loss->cfg.cls_gain * sums[1] / norm,
                         .dfl = loss->cfg.dfl_gain * sums[2] / norm, .n_foreground = n_fg,
                         .n_instances = loss->n_targets};
    if (parts) *parts = p;
    return (p.box + p.cls + p.dfl) * (double)B;
}

double detect_loss_compute(DetectLoss *loss, int64_t batch_n, const float *pred, const TargetBox *targets,
                           int64_t n_targets, float *dpred, DetectLossParts *parts) {
    detect_loss_assign(loss, batch_n, pred, targets, n_targets);
    return detect_loss_evaluate(loss, pred, dpred, parts);
}
