#include "kernels/loss_detect_config.h"

#include <string.h>

DetectLossConfig detect_loss_config_default(int64_t nc, int64_t reg_max) {
    return (DetectLossConfig){.nc = nc, .reg_max = reg_max, .box_gain = 7.5, .cls_gain = 0.5, .dfl_gain = 1.5,
                              .topk = 10, .alpha = 0.5, .beta = 6.0, .eps = 1e-9};
}

bool detect_loss_config_check(const DetectLossConfig *cfg, int64_t max_batch, int64_t *n_anchors, Error *err) {
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

void detect_loss_anchor_grid(const DetectLossConfig *cfg, double *x, double *y, double *stride) {
    int64_t a = 0;
    for (int l = 0; l < cfg->n_levels; l++)
        for (int64_t row = 0; row < cfg->levels[l].h; row++)
            for (int64_t col = 0; col < cfg->levels[l].w; col++, a++) {
                x[a] = (double)col + 0.5;
                y[a] = (double)row + 0.5;
                stride[a] = (double)cfg->levels[l].stride;
            }
}

// Ultralytics' preprocess (normalised xywh to pixels, xyxy, at imgsz = level 0's grid times its
// stride) and the candidate region of select_candidates_in_gts (xyxy2xywh, sides under the stride
// of level 1 raised to it, xywh2xyxy).
static DetectLossGt gt_box_make(const DetectLossConfig *cfg, const TargetBox *t) {
    double imgsz_w = (double)(cfg->levels[0].w * cfg->levels[0].stride);
    double imgsz_h = (double)(cfg->levels[0].h * cfg->levels[0].stride);
    double stride_val = (double)cfg->levels[cfg->n_levels > 1 ? 1 : 0].stride;
    DetectLossGt g = {.cls = t->cls};
    double cx = (double)t->cx * imgsz_w, cy = (double)t->cy * imgsz_h;
    double hw = (double)t->w * imgsz_w / 2, hh = (double)t->h * imgsz_h / 2;
    g.x1 = cx - hw, g.y1 = cy - hh, g.x2 = cx + hw, g.y2 = cy + hh;
    g.valid = g.x1 + g.y1 + g.x2 + g.y2 > 0;
    double mx = (g.x1 + g.x2) / 2, my = (g.y1 + g.y2) / 2, w = g.x2 - g.x1, h = g.y2 - g.y1;
    if (g.valid && w < stride_val) w = stride_val;
    if (g.valid && h < stride_val) h = stride_val;
    g.cx1 = mx - w / 2, g.cy1 = my - h / 2, g.cx2 = mx + w / 2, g.cy2 = my + h / 2;
    return g;
}

void detect_loss_targets_group(const DetectLossConfig *cfg, int64_t batch_n, const TargetBox *targets,
                               int64_t n_targets, DetectLossGt *gts, int64_t *gt_start) {
    memset(gt_start, 0, (size_t)(batch_n + 1) * sizeof *gt_start);
    for (int64_t j = 0; j < n_targets; j++) {
        YP_CHECK(targets[j].image >= 0 && targets[j].image < batch_n);
        YP_CHECK(targets[j].cls >= 0 && targets[j].cls < cfg->nc);
        gt_start[targets[j].image + 1]++;
    }
    for (int64_t i = 0; i < batch_n; i++) gt_start[i + 1] += gt_start[i];
    // gt_start[i] serves as image i's placement cursor, which leaves it at image i + 1's start:
    // shifting by one restores the starts.
    for (int64_t j = 0; j < n_targets; j++) gts[gt_start[targets[j].image]++] = gt_box_make(cfg, &targets[j]);
    for (int64_t i = batch_n; i > 0; i--) gt_start[i] = gt_start[i - 1];
    gt_start[0] = 0;
}
