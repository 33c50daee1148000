// The detection loss's configuration, loss items and host-side set-up, shared by the CPU loss
// (kernels/cpu/cpu_loss.c) and the CUDA one (kernels/cuda/cuda_loss.cu), the two implementations of
// the ops table's detect_loss_* slots (kernels/backend.h): plain data, and the checks and
// conversions both run before their own loops.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/core/error.h"
#include "framework/core/targets.h"

// Also included from CUDA (kernels/cuda/cuda_loss.cu, compiled as C++).
#ifdef __cplusplus
extern "C" {
#endif

enum { DETECT_LOSS_MAX_LEVELS = 8 };

typedef struct DetectLossLevel {
    int64_t h, w;    // grid size of this level's Detect input
    int64_t stride;  // input pixels per grid cell
} DetectLossLevel;

typedef struct DetectLossConfig {
    int64_t nc, reg_max;  // classes; distribution bins per box side (reg_max > 1: DFL)
    int n_levels;
    DetectLossLevel levels[DETECT_LOSS_MAX_LEVELS];
    double box_gain, cls_gain, dfl_gain;  // Ultralytics' hyperparameters box, cls, dfl
    int64_t topk;                         // TaskAlignedAssigner: candidates kept per ground truth
    double alpha, beta;                   // alignment = score^alpha * CIoU^beta
    double eps;                           // assigner's epsilon (normalisation and inside-box margin)
} DetectLossConfig;

// Ultralytics' defaults (box 7.5, cls 0.5, dfl 1.5, topk 10, alpha 0.5, beta 6.0, eps 1e-9) for nc
// classes and reg_max bins; n_levels is 0: the caller fills levels from the Detect layer's inputs.
DetectLossConfig detect_loss_config_default(int64_t nc, int64_t reg_max);

// Ultralytics' loss items (`loss.detect()`): gained, averaged over target scores, not multiplied
// by the batch size; plus counts for progress display.
typedef struct DetectLossParts {
    double box, cls, dfl;
    int64_t n_foreground;  // anchors assigned to a ground truth
    int64_t n_instances;   // ground-truth boxes in the batch
} DetectLossParts;

// What detect_loss_create checks (a user error names the field); writes the anchors per image (A).
bool detect_loss_config_check(const DetectLossConfig *cfg, int64_t max_batch, int64_t *n_anchors, Error *err);

// The anchors, level by level and row-major within a level: cell centres x + 0.5, y + 0.5 in grid
// units, and their level's stride. x, y and stride (A each) are the caller's, overwritten.
void detect_loss_anchor_grid(const DetectLossConfig *cfg, double *x, double *y, double *stride);

// A ground-truth box as the assigner sees it: Ultralytics' preprocess (normalised xywh to pixel
// xyxy) and the candidate region of select_candidates_in_gts (sides under the stride of level 1
// widened to it).
typedef struct DetectLossGt {
    double x1, y1, x2, y2;      // pixels
    double cx1, cy1, cx2, cy2;  // candidate region, pixels
    int32_t cls;
    bool valid;                 // Ultralytics' mask_gt: x1 + y1 + x2 + y2 > 0
} DetectLossGt;

// Groups targets by image, each image's in their given order, and converts them: image i's ground
// truths are gts[gt_start[i]] to gts[gt_start[i + 1] - 1]. gts (n_targets) and gt_start
// (batch_n + 1) are the caller's, overwritten. An image or class index out of range is an internal
// error (the data pipeline produced it).
void detect_loss_targets_group(const DetectLossConfig *cfg, int64_t batch_n, const TargetBox *targets,
                               int64_t n_targets, DetectLossGt *gts, int64_t *gt_start);

#ifdef __cplusplus
}
#endif
