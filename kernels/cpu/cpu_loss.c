// Ultralytics 8.4's v8DetectionLoss (ultralytics/utils/loss.py) with its TaskAlignedAssigner
// (ultralytics/utils/tal.py), written per image so that images run in parallel: the assigner's
// dense (gts x anchors) tensors become a pass over the anchors per ground truth that keeps only
// the top-k list, and every pair value needed later is recomputed by the same function, so it is
// bit-identical to the value the selection saw.
//
// Precision: geometry, the assigner, the box and DFL terms run in double from the float inputs;
// the class BCE over all anchors x classes runs in float with double sums. The per-element
// arithmetic is in kernels/loss_detect_math.h, shared with the CUDA loss.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_loss.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/loss_detect_math.h"

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
    double *anchor_x, *anchor_y, *anchor_stride;  // (A) centres in grid units, strides

    // The assignment, written by detect_loss_assign for detect_loss_evaluate.
    int64_t batch_n, n_targets;
    int64_t *gt_start;     // (max_batch + 1) each image's first ground truth in gts
    int32_t *assigned;     // (max_batch, A) ground truth (index within the image) or -1
    double *target_score;  // (max_batch, A) normalised alignment of the assigned ground truth
    double *score_sum;     // (max_batch) sum of target_score per image
    int64_t *n_fg;         // (max_batch) foreground anchors per image
    double *image_sums;    // (max_batch, 3) box, cls, dfl sums before gains and normalisation

    int64_t gt_capacity;   // grown when a batch has more ground truths
    DetectLossGt *gts;     // (gt_capacity) grouped by image
    double *pos_overlap, *pos_align;  // (gt_capacity) maxima over each ground truth's anchors

    int n_slots;
    ThreadScratch *slots;  // (n_slots)
};

bool detect_loss_create(const DetectLossConfig *cfg, int64_t max_batch, DetectLoss **out, Error *err) {
    int64_t A = 0;
    if (!detect_loss_config_check(cfg, max_batch, &A, err)) return false;
    DetectLoss *L = yp_calloc(1, sizeof *L);
    L->cfg = *cfg;
    L->n_anchors = A;
    L->n_channels = 4 * cfg->reg_max + cfg->nc;
    L->max_batch = max_batch;
    L->anchor_x = yp_malloc((size_t)A * sizeof *L->anchor_x);
    L->anchor_y = yp_malloc((size_t)A * sizeof *L->anchor_y);
    L->anchor_stride = yp_malloc((size_t)A * sizeof *L->anchor_stride);
    detect_loss_anchor_grid(cfg, L->anchor_x, L->anchor_y, L->anchor_stride);
    size_t nb = (size_t)max_batch;
    L->gt_start = yp_calloc(nb + 1, sizeof *L->gt_start);
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
        detect_loss_box_from_dist(L->anchor_x[a], L->anchor_y[a], d, b);
        t->decoded[a] = 1;
    }
    return b;
}

static bool gt_has_candidate(const DetectLoss *L, const DetectLossGt *g, int64_t a) {
    return detect_loss_gt_has_candidate(g, L->anchor_x[a], L->anchor_y[a], L->anchor_stride[a], L->cfg.eps);
}

// The assigner's overlaps and align_metric entries for (g, a): for candidates, CIoU(gt, predicted
// box in pixels) clamped at 0, and sigmoid(class score)^alpha * overlap^beta; 0 elsewhere. Returns
// whether a is a candidate of g.
static bool pair_metric(const DetectLoss *L, ThreadScratch *t, const float *pred_i, const DetectLossGt *g,
                        int64_t a, double *overlap, double *metric) {
    *overlap = *metric = 0;
    if (!gt_has_candidate(L, g, a)) return false;
    *overlap = detect_loss_overlap(g, anchor_box(L, t, pred_i, a), L->anchor_stride[a]);
    float logit = pred_i[(4 * L->cfg.reg_max + g->cls) * L->n_anchors + a];
    *metric = detect_loss_alignment(logit, *overlap, L->cfg.alpha, L->cfg.beta);
    return true;
}

// ---- assignment ----------------------------------------------------------------------------------

// select_topk_candidates for one ground truth: the topk largest align metrics over all anchors
// (non-candidates count as 0). torch.topk leaves the order of equal values unspecified; we take
// the lower anchor index first. That matters only where fewer than topk candidates have a positive
// metric: the zero-metric anchors then chosen carry a target score of 0, but they count as
// foreground, and one shared with another ground truth goes through the highest-overlap rule.
static void gt_select_topk(const DetectLoss *L, ThreadScratch *t, const float *pred_i, const DetectLossGt *g,
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
    const DetectLossGt *gts = L->gts + g0;
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
        const DetectLossGt *g = &gts[assigned[a]];
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
            score[a] = detect_loss_target_score(score[a], pos_overlap[assigned[a]], pos_align[assigned[a]], L->cfg.eps);
            sum += score[a];
        }
    L->score_sum[i] = sum;
    L->n_fg[i] = n_fg;
}

// Grows the per-ground-truth buffers to n_targets when that is more than ever before.
static void gt_reserve(DetectLoss *L, int64_t n_targets) {
    if (n_targets <= L->gt_capacity) return;
    L->gt_capacity = n_targets;
    size_t n = (size_t)n_targets;
    L->gts = yp_realloc(L->gts, n * sizeof *L->gts);
    L->pos_overlap = yp_realloc(L->pos_overlap, n * sizeof *L->pos_overlap);
    L->pos_align = yp_realloc(L->pos_align, n * sizeof *L->pos_align);
}

// Groups the targets by image into L->gts, growing the per-ground-truth buffers when this batch has
// more than ever before (never, behind the backend slots: detect_loss_reserve made room).
static void targets_group(DetectLoss *L, int64_t batch_n, const TargetBox *targets, int64_t n_targets) {
    gt_reserve(L, n_targets);
    detect_loss_targets_group(&L->cfg, batch_n, targets, n_targets, L->gts, L->gt_start);
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
    const DetectLossGt *gts = L->gts + L->gt_start[i];

    // BCE-with-logits against target scores (one-hot class times score) over every anchor and class.
    double cls_sum = 0;
    float cls_scale = (float)(cfg->cls_gain * scale);
    for (int64_t c = 0; c < cfg->nc; c++) {
        const float *x = pred_i + (4 * R + c) * A;
        float *dx = dpred_i ? dpred_i + (4 * R + c) * A : NULL;
        double row = 0;
        for (int64_t a = 0; a < A; a++) {
            float target = assigned[a] >= 0 && gts[assigned[a]].cls == c ? (float)score[a] : 0.0f;
            row += (double)detect_loss_bce(x[a], target, cls_scale, dx ? &dx[a] : NULL);
        }
        cls_sum += row;
    }

    // CIoU box loss and DFL on foreground anchors, both weighted by the anchor's target score.
    if (dpred_i) memset(dpred_i, 0, (size_t)(4 * R * A) * sizeof *dpred_i);
    double box_sum = 0, dfl_sum = 0, box_scale = cfg->box_gain * scale, dfl_scale = cfg->dfl_gain * scale;
    for (int64_t a = 0; a < A; a++) {
        if (assigned[a] < 0) continue;
        double w = score[a], d[4];
        dist_decode(L, pred_i, a, t->prob, t->log_prob, d);
        DetectLossBoxTerm bt =
            detect_loss_box_term(L->anchor_x[a], L->anchor_y[a], L->anchor_stride[a], d, &gts[assigned[a]], w);
        box_sum += bt.term;
        double ce_sum = 0;
        for (int side = 0; side < 4; side++) {
            const double *p = t->prob + side * R, *log_p = t->log_prob + side * R;
            DetectLossDflBins bins = detect_loss_dfl_bins(bt.target[side], R);
            ce_sum += detect_loss_dfl_ce(log_p[bins.lo], log_p[bins.lo + 1], bins);
            if (!dpred_i) continue;
            float *dx = dpred_i + side * R * A + a;
            double g_box = box_scale * bt.d_dist[side], g_dfl = dfl_scale * w / 4;
            for (int64_t k = 0; k < R; k++) dx[k * A] = detect_loss_bin_grad(p[k], k, d[side], bins, g_box, g_dfl);
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
    double norm = detect_loss_norm(score_sum);
#pragma omp parallel for num_threads(loss->n_slots) schedule(dynamic, 1)
    for (int64_t i = 0; i < B; i++)
        image_evaluate(loss, &loss->slots[omp_get_thread_num()], i, pred + i * per_image,
                       dpred ? dpred + i * per_image : NULL, (double)B / norm);
    for (int64_t i = 0; i < B; i++)
        for (int j = 0; j < 3; j++) sums[j] += loss->image_sums[3 * i + j];
    return detect_loss_total(&loss->cfg, B, sums, norm, n_fg, loss->n_targets, parts);
}

double detect_loss_compute(DetectLoss *loss, int64_t batch_n, const float *pred, const TargetBox *targets,
                           int64_t n_targets, float *dpred, DetectLossParts *parts) {
    detect_loss_assign(loss, batch_n, pred, targets, n_targets);
    return detect_loss_evaluate(loss, pred, dpred, parts);
}

// ---- the CPU backend's detect_loss_* slots (kernels/backend.h) ---------------------------------------
// The host loss on the backend's activations: the prediction widened to float32
// (download_activation; a copy in float32), the loss, its float32 gradient times grad_scale (one
// float multiplication, skipped when grad_scale is 1) rounded into dpred (upload_activation).

struct BackendDetectLoss {
    DetectLoss *loss;
    size_t max_elems;  // prediction elements of a batch of max_batch images
};

// The float32 copies of a batch's prediction and gradient, in the context's loss scratch, which
// detect_loss_create grew for the largest loss of this backend.
static float *loss_scratch(Backend *be, size_t n_elems, int half) {
    CpuContext *ctx = be->ctx;
    YP_CHECK(n_elems <= ctx->loss_elems);
    return ctx->loss_scratch + (size_t)half * ctx->loss_elems;
}

bool cpu_detect_loss_create(Backend *be, const DetectLossConfig *cfg, int64_t max_batch, int64_t max_targets,
                            BackendDetectLoss **out, Error *err) {
    *out = NULL;
    YP_CHECK(max_targets >= 0);
    DetectLoss *loss = NULL;
    if (!detect_loss_create(cfg, max_batch, &loss, err)) return false;
    gt_reserve(loss, max_targets);
    BackendDetectLoss *l = yp_calloc(1, sizeof *l);
    l->loss = loss;
    l->max_elems = (size_t)(max_batch * loss->n_channels * loss->n_anchors);
    CpuContext *ctx = be->ctx;
    if (l->max_elems > ctx->loss_elems) {
        free(ctx->loss_scratch);
        ctx->loss_scratch = yp_malloc(2 * l->max_elems * sizeof *ctx->loss_scratch);
        ctx->loss_elems = l->max_elems;
    }
    *out = l;
    return true;
}

void cpu_detect_loss_destroy(Backend *be, BackendDetectLoss *loss) {
    (void)be;
    if (!loss) return;
    detect_loss_destroy(loss->loss);
    free(loss);
}

void cpu_detect_loss_reserve(Backend *be, BackendDetectLoss *loss, int64_t max_targets) {
    (void)be;
    YP_CHECK(max_targets >= 0);
    gt_reserve(loss->loss, max_targets);
}

double cpu_detect_loss_compute(Backend *be, BackendDetectLoss *loss, int64_t batch_n, const void *pred,
                               const TargetBox *targets, int64_t n_targets, float grad_scale, void *dpred,
                               DetectLossParts *parts) {
    YP_CHECK(batch_n >= 1 && batch_n <= loss->loss->max_batch);
    size_t n = (size_t)(batch_n * loss->loss->n_channels * loss->loss->n_anchors);
    float *host_pred = loss_scratch(be, n, 0), *host_dpred = dpred ? loss_scratch(be, n, 1) : NULL;
    be->ops->download_activation(be, host_pred, pred, n);
    double total = detect_loss_compute(loss->loss, batch_n, host_pred, targets, n_targets, host_dpred, parts);
    if (!dpred) return total;
    if (grad_scale != 1.0f)
        for (size_t i = 0; i < n; i++) host_dpred[i] *= grad_scale;
    be->ops->upload_activation(be, dpred, host_dpred, n);
    return total;
}
