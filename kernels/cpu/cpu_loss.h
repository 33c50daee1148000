// The CPU backend's detection loss: Ultralytics 8.4's v8DetectionLoss (ultralytics/utils/loss.py)
// with its TaskAlignedAssigner (ultralytics/utils/tal.py) on host float arrays, the reference that
// the CUDA loss (kernels/cuda/cuda_loss.h) and the tests compare with. Returns the loss exactly as
// Ultralytics hands it to backward and writes the gradient of that value with respect to Detect's
// training output. Callers that hold host arrays use it directly (layers/loss.h includes this
// header for them); the executor reaches it through the CPU backend's detect_loss_* slots
// (kernels/backend.h), which move the output between the backend's activations and float32.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/core/error.h"
#include "framework/core/targets.h"
#include "kernels/loss_detect_config.h"

typedef struct DetectLoss DetectLoss;

// Checks the configuration (a user error names the field) and allocates all work memory for
// batches of up to max_batch images. The caller owns *out and frees it with detect_loss_destroy.
bool detect_loss_create(const DetectLossConfig *cfg, int64_t max_batch, DetectLoss **out, Error *err);
void detect_loss_destroy(DetectLoss *loss);

// Anchors per image (A): sum of h * w over levels.
int64_t detect_loss_anchors(const DetectLoss *loss);

// The whole loss: detect_loss_assign then detect_loss_evaluate. pred is Detect's training output
// (batch_n, 4 * reg_max + nc, A, 1): per image, channel-major, the box-distribution logits (side
// s in l, t, r, b, bin k at channel s * reg_max + k) then the class logits; anchors level by level,
// row-major within a level. targets (not retained) are grouped by image. Returns the total
// (box + cls + dfl) * batch_n, the value Ultralytics back-propagates; writes d(total)/d(pred) into
// dpred (same layout, overwritten; NULL for a loss without gradient, as in validation) and the
// parts into *parts (may be NULL). Bit-identical for any number of OpenMP threads.
double detect_loss_compute(DetectLoss *loss, int64_t batch_n, const float *pred, const TargetBox *targets,
                           int64_t n_targets, float *dpred, DetectLossParts *parts);

// The two halves of detect_loss_compute, which Ultralytics separates with no_grad: the
// task-aligned assignment from the detached predictions, kept in `loss`; then the loss and its
// gradient against that assignment, whose target scores are constants for the gradient.
void detect_loss_assign(DetectLoss *loss, int64_t batch_n, const float *pred, const TargetBox *targets,
                        int64_t n_targets);
double detect_loss_evaluate(DetectLoss *loss, const float *pred, float *dpred, DetectLossParts *parts);
