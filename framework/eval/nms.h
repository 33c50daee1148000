// Detection post-processing as Ultralytics 8.4 validates: Detect's inference decode (DFL expectation,
// dist2bbox, x stride, sigmoid) and ultralytics.utils.nms.non_max_suppression with
// torchvision.ops.nms semantics.
//
// Two entry points give the same detections:
//   nms_predictions      from Detect's inference output (4 + nc, A): the reference semantics,
//                        checked bit for bit against Ultralytics on the same input;
//   detect_decoder_nms   from Detect's training-layout output (raw logits), decoding only the anchors
//                        that can pass the confidence threshold (the fast path for validation).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "layers/graph.h"

typedef struct NmsConfig {
    float conf;        // keep class scores > conf
    double iou;        // suppress a box whose IoU with a kept box of its class is > iou
    bool multi_label;  // one candidate per (box, class) with score > conf; else the best class only
    int64_t max_det;   // detections kept per image
    int64_t max_nms;   // candidates entering NMS, highest scores first
    float max_wh;      // per-class coordinate offset that separates classes
} NmsConfig;

// DetectionValidator's settings: conf 0.001, IoU 0.7, multi-label, 300 detections, 30000 candidates,
// offset 7680.
NmsConfig nms_config_validation(void);

// The detections of a batch, max_det slots per image.
typedef struct Detections {
    int64_t n_images, max_det;
    int64_t *count;   // (n_images) detections kept per image
    float *boxes;     // (n_images, max_det, 4) x1 y1 x2 y2 in network-input pixels
    float *scores;    // (n_images, max_det), descending within an image
    int32_t *cls;     // (n_images, max_det)
} Detections;

// Returns a batch with every count 0; the caller owns it (detections_destroy).
Detections *detections_create(int64_t n_images, int64_t max_det);
void detections_destroy(Detections *d);

// Ultralytics' non_max_suppression for one image: pred is Detect's inference output (4 + nc, A),
// rows cx, cy, w, h (pixels) then the nc class scores, anchors contiguous. Candidates are taken
// anchor by anchor, classes in order; sorted by score (ties keep that order); the best max_nms go
// through class-offset NMS; the first max_det kept are written to image `image` of out
// (out->max_det >= cfg->max_det).
void nms_predictions(const float *pred, int64_t n_anchors, int64_t nc, const NmsConfig *cfg, Detections *out,
                     int64_t image);

// One input level of the Detect head: feature-map size and stride in input pixels.
typedef struct DetectLevelSize {
    int64_t h, w, stride;
} DetectLevelSize;

// Anchor geometry of one Detect head at one input size. Anchors run level by level, row-major,
// centred at (x + 0.5, y + 0.5) * stride.
typedef struct DetectDecoder DetectDecoder;

// levels: n_levels sizes (copied). The caller owns the result (detect_decoder_destroy).
DetectDecoder *detect_decoder_create(const DetectLevelSize *levels, int n_levels, int64_t nc, int64_t reg_max);

// The decoder of graph g's Detect head at an input of h x w pixels (multiples of its largest stride).
DetectDecoder *detect_decoder_for_graph(const Graph *g, int64_t h, int64_t w, int64_t nc);
void detect_decoder_destroy(DetectDecoder *dec);
int64_t detect_decoder_anchors(const DetectDecoder *dec);

// Detect's inference output for one image: raw is its training-layout output (4 reg_max + nc, A)
// (box-distribution logits, then class logits); pred receives (4 + nc, A): cx, cy, w, h in pixels,
// then sigmoid class scores. Both arrays belong to the caller.
void detect_decoder_predict(const DetectDecoder *dec, const float *raw, float *pred);

// Decode and NMS for a batch: raw is Detect's output (n_images, 4 reg_max + nc, A), as
// detect_decoder_predict then nms_predictions would, image i into slot i of out. Images run in
// parallel (OpenMP); each image's result is independent of the thread count.
void detect_decoder_nms(const DetectDecoder *dec, const float *raw, int64_t n_images, const NmsConfig *cfg,
                        Detections *out);
