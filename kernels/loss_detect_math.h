// The per-element arithmetic of the detection loss, shared by the CPU loss (kernels/cpu/cpu_loss.c)
// and the CUDA one (kernels/cuda/cuda_loss.cu): inline functions that compile as C and as CUDA
// device code, so that both sides run the same operations in the same order. Only the loops,
// the memory and the sums' order differ between the two.
//
// On the GPU, nvcc may fuse a multiply and an add, and exp, pow and atan are not glibc's: values
// agree to a few ulps, not bit for bit. Everything here is double except the class BCE, float as
// in Ultralytics' float32 run.
#pragma once

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "framework/core/host_device.h"
#include "kernels/loss_detect_config.h"

// bbox_iou's default epsilon (the assigner's is cfg.eps).
#define DETECT_LOSS_CIOU_EPS 1e-7

// Share of d max(a, b) that goes to a, as PyTorch's maximum/minimum backward (ties split it).
YP_HOST_DEVICE static inline double detect_loss_max_share(double a, double b) {
    return a > b ? 1.0 : a == b ? 0.5 : 0.0;
}

// bbox_iou(box1, box2, xywh=False, CIoU=True) on xyxy boxes, in Ultralytics' order of operations.
// With d_b1 non-NULL, adds grad * d CIoU / d box1 to it; alpha is a constant there, as under
// Ultralytics' no_grad.
YP_HOST_DEVICE static inline double detect_loss_ciou(const double b1[4], const double b2[4], double grad,
                                                     double d_b1[4]) {
    const double eps = DETECT_LOSS_CIOU_EPS, k = 4.0 / (M_PI * M_PI);
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
    d_b1[0] += -g_w1 + g_dx - g_iw * detect_loss_max_share(b1[0], b2[0]) - g_cw * detect_loss_max_share(b2[0], b1[0]);
    d_b1[1] += -g_h1 + g_dy - g_ih * detect_loss_max_share(b1[1], b2[1]) - g_ch * detect_loss_max_share(b2[1], b1[1]);
    d_b1[2] += g_w1 + g_dx + g_iw * detect_loss_max_share(b2[2], b1[2]) + g_cw * detect_loss_max_share(b1[2], b2[2]);
    d_b1[3] += g_h1 + g_dy + g_ih * detect_loss_max_share(b2[3], b1[3]) + g_ch * detect_loss_max_share(b1[3], b2[3]);
    return ciou;
}

// The box (xyxy, grid units) of an anchor at (ax, ay) from its left, top, right, bottom distances.
YP_HOST_DEVICE static inline void detect_loss_box_from_dist(double ax, double ay, const double dist[4], double box[4]) {
    box[0] = ax - dist[0];
    box[1] = ay - dist[1];
    box[2] = ax + dist[2];
    box[3] = ay + dist[3];
}

// select_candidates_in_gts: the centre of the anchor at (ax, ay) in grid units of stride s, in
// pixels, strictly inside the ground truth's candidate region (by more than eps).
YP_HOST_DEVICE static inline bool detect_loss_gt_has_candidate(const DetectLossGt *g, double ax, double ay, double s,
                                                               double eps) {
    double x = ax * s, y = ay * s;
    return g->valid && x - g->cx1 > eps && y - g->cy1 > eps && g->cx2 - x > eps && g->cy2 - y > eps;
}

// The assigner's overlap of a candidate pair: CIoU(ground truth, predicted box in pixels) clamped
// at 0; box in grid units of stride s.
YP_HOST_DEVICE static inline double detect_loss_overlap(const DetectLossGt *g, const double box[4], double s) {
    double pd[4] = {box[0] * s, box[1] * s, box[2] * s, box[3] * s}, gt[4] = {g->x1, g->y1, g->x2, g->y2};
    double iou = detect_loss_ciou(gt, pd, 0, NULL);
    return iou > 0 ? iou : 0;
}

// The alignment metric of a candidate pair: sigmoid(class logit)^alpha * overlap^beta.
YP_HOST_DEVICE static inline double detect_loss_alignment(float logit, double overlap, double alpha, double beta) {
    double score = 1 / (1 + exp(-(double)logit));
    return pow(score, alpha) * pow(overlap, beta);
}

// A positive anchor's target score: its alignment scaled to its ground truth's best overlap over its
// best alignment (both maxima over the ground truth's positive anchors).
YP_HOST_DEVICE static inline double detect_loss_target_score(double metric, double pos_overlap, double pos_align,
                                                             double eps) {
    return metric * pos_overlap / (pos_align + eps);
}

// Ultralytics' normaliser: target_scores.sum().clamp(min=1).
YP_HOST_DEVICE static inline double detect_loss_norm(double score_sum) { return score_sum > 1 ? score_sum : 1; }

// BCE-with-logits of logit x against target, in float: returns the term; with dx non-NULL, writes
// scale * d term / dx there.
YP_HOST_DEVICE static inline float detect_loss_bce(float x, float target, float scale, float *dx) {
    float e = expf(-fabsf(x));
    if (dx) *dx = scale * ((x >= 0 ? 1.0f : e) / (1.0f + e) - target);
    return fmaxf(x, 0.0f) - x * target + log1pf(e);
}

// The CIoU box term of a positive anchor at (ax, ay) of stride s, with predicted distances dist
// (grid units), against ground truth g, weighted by its target score w.
typedef struct DetectLossBoxTerm {
    double term;       // (1 - CIoU) * w
    double d_dist[4];  // d term / d dist (left, top, right, bottom), for the gradient grad = -w
    double target[4];  // bbox2dist: distances from the anchor to the ground truth's sides, grid units
} DetectLossBoxTerm;

YP_HOST_DEVICE static inline DetectLossBoxTerm detect_loss_box_term(double ax, double ay, double s,
                                                                     const double dist[4], const DetectLossGt *g,
                                                                     double w) {
    DetectLossBoxTerm t;
    double pb[4], tb[4] = {g->x1 / s, g->y1 / s, g->x2 / s, g->y2 / s};
    double d_pb[4] = {0, 0, 0, 0};
    detect_loss_box_from_dist(ax, ay, dist, pb);
    t.term = (1.0 - detect_loss_ciou(pb, tb, -w, d_pb)) * w;
    t.target[0] = ax - tb[0];
    t.target[1] = ay - tb[1];
    t.target[2] = tb[2] - ax;
    t.target[3] = tb[3] - ay;
    t.d_dist[0] = -d_pb[0];  // x1 = ax - l, y1 = ay - t, x2 = ax + r, y2 = ay + b
    t.d_dist[1] = -d_pb[1];
    t.d_dist[2] = d_pb[2];
    t.d_dist[3] = d_pb[3];
    return t;
}

// The DFL target of one side: the distance clamped to [0, reg_max - 1.01] so that lo + 1 is a bin,
// split linearly between bins lo and lo + 1.
typedef struct DetectLossDflBins {
    int64_t lo;
    double w_lo, w_hi;
} DetectLossDflBins;

YP_HOST_DEVICE static inline DetectLossDflBins detect_loss_dfl_bins(double target, int64_t reg_max) {
    double side_max = (double)(reg_max - 1) - 0.01;
    double tgt = fmin(fmax(target, 0.0), side_max);
    DetectLossDflBins b;
    b.lo = (int64_t)tgt;
    b.w_lo = (double)(b.lo + 1) - tgt;
    b.w_hi = 1 - b.w_lo;
    return b;
}

// The DFL cross-entropy of one side from the log-probabilities of its two target bins.
YP_HOST_DEVICE static inline double detect_loss_dfl_ce(double log_p_lo, double log_p_hi, DetectLossDflBins b) {
    return -(log_p_lo * b.w_lo + log_p_hi * b.w_hi);
}

// d total / d logit of bin k of a side whose bin probability is p and expected distance dist:
// g_box (the box gain times the side's d_dist, times batch_n / norm) through the expectation, and
// g_dfl (the DFL gain times w / 4, times batch_n / norm) through the cross-entropy.
YP_HOST_DEVICE static inline float detect_loss_bin_grad(double p, int64_t k, double dist, DetectLossDflBins b,
                                                        double g_box, double g_dfl) {
    double onehot = (k == b.lo ? b.w_lo : 0) + (k == b.lo + 1 ? b.w_hi : 0);
    return (float)(g_box * p * ((double)k - dist) + g_dfl * (p - onehot));
}

// The loss items from the unnormalised sums over the batch (box, cls, dfl) and the normaliser;
// returns the total Ultralytics back-propagates, their sum times batch_n. parts may be NULL.
YP_HOST_DEVICE static inline double detect_loss_total(const DetectLossConfig *cfg, int64_t batch_n,
                                                      const double sums[3], double norm, int64_t n_foreground,
                                                      int64_t n_instances, DetectLossParts *parts) {
    DetectLossParts p = {cfg->box_gain * sums[0] / norm, cfg->cls_gain * sums[1] / norm, cfg->dfl_gain * sums[2] / norm,
                         n_foreground, n_instances};
    if (parts) *parts = p;
    return (p.box + p.cls + p.dfl) * (double)batch_n;
}
