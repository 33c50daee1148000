// The training losses, on host float arrays: Ultralytics 8.4's v8DetectionLoss (task-aligned
// assignment, BCE class loss, CIoU box loss, distribution focal loss) and v8ClassificationLoss
// (cross-entropy). Each returns the loss exactly as Ultralytics hands it to backward and writes the
// gradient of that value with respect to the head's training output.
//
// The detection loss is the CPU backend's (kernels/cpu/cpu_loss.h, included here for callers that
// run it on host arrays, such as the tests): a backend computes it where the network output lies,
// through the ops table's detect_loss_* slots (kernels/backend.h), which is how the executor
// reaches it. The classification loss, a few numbers per image, is computed here on the host.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/cpu/cpu_loss.h"
#include "layers/graph.h"

// v8ClassificationLoss: F.cross_entropy(logits, labels, reduction="mean"), not multiplied by the
// batch size (Ultralytics 8.4). logits is Classify's training output (batch_n, nc, 1, 1), labels
// in [0, nc). Writes d(loss)/d(logits) into dlogits (overwritten; NULL for no gradient).
double classify_loss_compute(int64_t batch_n, int64_t nc, const float *logits, const int32_t *labels,
                             float *dlogits);

// The detection loss's configuration for side x side inputs of g's model: nc and reg_max from its
// spec, one level per Detect input with the graph's strides, Ultralytics' default gains and
// assigner settings (the caller sets the experiment's train.box, train.cls and train.dfl).
DetectLossConfig detect_loss_config_for_graph(const Graph *g, int64_t side);
