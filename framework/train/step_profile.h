// The costs of a training step besides the layers' passes, timed as the trainer incurs them, for
// `yolopipe profile` (the step lines of the profile CSV, partition/cost.h): the optimizer step, the
// EMA update, the loss of one micro-batch and the data loader's throughput per thread.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/config/config.h"
#include "framework/core/error.h"
#include "framework/data/dataset.h"
#include "framework/train/optim.h"
#include "layers/graph.h"
#include "partition/cost.h"

typedef struct StepProfileInput {
    const ExperimentConfig *cfg;
    // The whole model with memory on a host-memory backend, at micro-batch size and train.imgsz,
    // after a training pass: the loss reads its output. Its gradients are overwritten. Borrowed.
    Graph *graph;
    const DatasetSplit *train;  // the experiment's training split (borrowed), or NULL: loss and loader untimed
    int repeats;                // timed runs of each after one warm-up (the loader: at least 16); the median is kept
} StepProfileInput;

// What was timed, for the printout (the per-byte and per-image figures go into the profile).
typedef struct StepProfileReport {
    OptimKind optimizer;
    double optimizer_s, ema_s;  // one step, one update of the whole model
    int64_t param_bytes;        // the model's float32 parameters (LayerCost.param_bytes summed)
    double loss_s;              // one micro-batch (0 without a training split)
    int64_t loss_images, loss_targets;
    double loader_batch_s;      // one replica's share of a batch, on one thread (0 without a split)
    int64_t loader_images;      // images in that share
} StepProfileReport;

// Times each cost in->repeats times after a warm-up and sets p's step fields (the loss and loader
// ones only with a training split). A split whose class ids the model cannot score (more classes in
// the data than the model's nc) and a batch larger than the split are user errors.
bool step_profile_measure(const StepProfileInput *in, CostProfile *p, StepProfileReport *report, Error *err);
