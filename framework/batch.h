// One batch as the data pipeline hands it to the trainer: images already letterboxed and augmented
// to the network input size, and their labels. Images stay bytes, as decoded: the backend converts
// them to the network input where it computes (upload_images), so a GPU receives a quarter of the
// bytes that float32 would take.
#pragma once

#include <stdint.h>

#include "layers/targets.h"

typedef struct Batch {
    int64_t n, h, w;       // images and network input size
    uint8_t *images;       // (n, h, w, 3) interleaved RGB bytes, host memory, owned
    int n_targets;
    TargetBox *targets;    // detection: every box of every image, grouped by image (owned)
    int32_t *labels;       // classification: one class per image (owned); NULL for detection
    int64_t *indices;      // dataset index of each image (owned), for reproducibility checks
} Batch;
