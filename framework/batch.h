// One batch as the data pipeline hands it to the trainer: images already letterboxed and augmented
// to the network input size, and their labels.
#pragma once

#include <stdint.h>

#include "layers/targets.h"

typedef struct Batch {
    int64_t n, h, w;       // images and network input size
    float *images;         // (n, 3, h, w) RGB in [0, 1], host memory, owned
    int n_targets;
    TargetBox *targets;    // detection: every box of every image, grouped by image (owned)
    int32_t *labels;       // classification: one class per image (owned); NULL for detection
    int64_t *indices;      // dataset index of each image (owned), for reproducibility checks
} Batch;
