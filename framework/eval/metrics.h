// Validation metrics as Ultralytics 8.4 computes them.
//
// Detection (DetectionValidator, DetMetrics, ap_per_class): each image's NMS detections are matched
// with its ground truth at IoU 0.50:0.05:0.95; finalize gives per class and overall precision and
// recall at the confidence of the best smoothed mean F1, AP (101-point interpolation of the
// precision envelope, trapezoid rule), mAP50, mAP50-95 and fitness, averaged over the classes that
// have ground truth.
//
// Classification (ClassificationValidator, ClassifyMetrics): top-1 and top-5 accuracy.
//
// Both also fill a ConfusionMatrix as Ultralytics' ConfusionMatrix does, and detection keeps the
// curves ap_per_class plots (PR, F1, P and R curves).
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/eval/nms.h"
#include "framework/core/targets.h"

enum { DETECT_METRICS_N_IOU = 10 };  // IoU thresholds 0.50, 0.55, ..., 0.95

typedef struct DetectClassMetrics {
    int64_t images, instances;          // images containing the class, ground-truth boxes
    double p, r;                        // at the confidence of the best smoothed mean F1
    double ap[DETECT_METRICS_N_IOU];    // AP at each IoU threshold
    double ap50, ap50_95;               // ap[0] and the mean of ap
} DetectClassMetrics;

// ap_per_class' curves on px = np.linspace(0, 1, 1000), one row per class with ground truth
// (ascending class index, as np.unique orders them); a class never predicted has all-zero rows.
enum { DETECT_CURVE_POINTS = 1000 };

typedef struct DetectCurves {
    int64_t n_rows;
    const int64_t *cls;            // (n_rows) the class of each row
    const double *p, *r, *f1;      // (n_rows, 1000) precision, recall, F1 against confidence px (IoU 0.5)
    const double *pr;              // (n_rows, 1000) the precision envelope against recall px (IoU 0.5)
} DetectCurves;

// px[i]: i / 999 as numpy's linspace computes it, px[999] = 1.
double detect_curve_x(int i);

// Ultralytics' ConfusionMatrix, indexed [predicted][true]. Detection: (nc + 1)^2, row and column nc
// being the background (missed ground truth in row nc, unmatched detections in column nc).
// Classification: nc^2 from the top-1 class.
typedef struct ConfusionMatrix {
    int64_t nc, n;      // n = nc + 1 (detection) or nc (classification)
    float conf, iou;    // detection: counted detections have score > conf; a match needs IoU > iou
    int64_t *counts;    // (n, n), owned
} ConfusionMatrix;

// The detection validator's settings for the confusion matrix: conf 0.25, IoU 0.45.
#define CONFUSION_DETECT_CONF 0.25f
#define CONFUSION_DETECT_IOU 0.45f

// detect: with the background row and column and the thresholds above. The caller owns the result.
ConfusionMatrix *confusion_create(int64_t nc, bool detect);
void confusion_destroy(ConfusionMatrix *cm);
void confusion_reset(ConfusionMatrix *cm);

// ConfusionMatrix.process_batch for one image: detections above cm->conf claim, in descending
// score order (ties in index order), the unclaimed ground truth of any class with the highest IoU
// above cm->iou; a matched pair counts at [det class][gt class], an unmatched ground truth at
// [background][gt class], an unmatched detection at [det class][background]. Boxes x1 y1 x2 y2.
void confusion_add_detections(ConfusionMatrix *cm, const float *det_boxes, const float *det_scores,
                              const int32_t *det_cls, int64_t n_det, const float *gt_boxes, const int32_t *gt_cls,
                              int64_t n_gt);

// process_cls_preds: n images' scores (n, nc), each counted at [top-1 class][label] (ties: the lower class).
void confusion_add_top1(ConfusionMatrix *cm, const float *scores, const int32_t *labels, int64_t n);

typedef struct DetectSummary {
    int64_t nc, n_images, n_instances;
    int64_t n_classes;          // classes with ground truth: the ones averaged over
    double p, r, map50, map50_95;
    double fitness;             // Ultralytics 8.4's box fitness: weights (0, 0, 0, 1) on (P, R, mAP50, mAP50-95)
    DetectClassMetrics *classes;  // (nc); zero for classes without ground truth
    DetectCurves curves;          // arrays owned by the metrics
    const ConfusionMatrix *confusion;  // at CONFUSION_DETECT_CONF / _IOU; owned by the metrics
} DetectSummary;

// Accumulates a validation run. Opaque.
typedef struct DetectMetrics DetectMetrics;

// The caller owns the result (detect_metrics_destroy).
DetectMetrics *detect_metrics_create(int64_t nc);
void detect_metrics_destroy(DetectMetrics *m);

// Forgets everything added (for the next validation run).
void detect_metrics_reset(DetectMetrics *m);

// Adds a batch: dets holds the NMS detections of its images (image i in slot i); targets are the
// ground-truth boxes of all of them (any order; image in [0, dets->n_images), class in [0, nc)),
// normalised by the network input size img_w x img_h. Neither is kept.
void detect_metrics_add_batch(DetectMetrics *m, const Detections *dets, const TargetBox *targets, int n_targets,
                              int64_t img_h, int64_t img_w);

// Computes the metrics of everything added so far. The summary belongs to m and stays valid until the
// next call on m.
const DetectSummary *detect_metrics_finalize(DetectMetrics *m);

// Writes Ultralytics' table: a header, the `all` row, then (when nc > 1) one row per class with
// ground truth. names: nc class names, or NULL to print class indices.
void detect_summary_print(const DetectSummary *s, const char *const *names, FILE *f);

// DetectionValidator.match_predictions for one image: detections in descending confidence order are
// matched greedily, each to the unclaimed ground truth of its class with the highest IoU (float32
// box_iou), separately at each threshold. Boxes are x1 y1 x2 y2 (n, 4); correct[j] gets bit t set when
// detection j is a true positive at threshold t. All arrays belong to the caller.
void detect_match(const float *det_boxes, const int32_t *det_cls, int64_t n_det, const float *gt_boxes,
                  const int32_t *gt_cls, int64_t n_gt, uint16_t *correct);

// Top-1 / top-5 counts of a classification run. A plain value: start from (ClassifyMetrics){.nc = nc}.
typedef struct ClassifyMetrics {
    int64_t nc, n_images, top1, top5;  // top5 counts labels ranked within the first min(5, nc)
    ConfusionMatrix *confusion;        // NULL, or an nc x nc matrix (not owned) that add also fills
} ClassifyMetrics;

// Adds n images: scores (n, nc) (logits or probabilities: the ranking is the same; ties rank the
// lower class first, as a stable descending argsort does) and labels (n) in [0, nc).
void classify_metrics_add(ClassifyMetrics *m, const float *scores, const int32_t *labels, int64_t n);

double classify_metrics_top1(const ClassifyMetrics *m);
double classify_metrics_top5(const ClassifyMetrics *m);
double classify_metrics_fitness(const ClassifyMetrics *m);  // mean of top-1 and top-5

// Writes Ultralytics' classification table: header and the `all` row.
void classify_metrics_print(const ClassifyMetrics *m, FILE *f);
