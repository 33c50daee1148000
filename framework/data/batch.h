// One batch as the data pipeline hands it to the trainer: images already letterboxed and augmented
// to the network input size, and their labels. Images stay bytes, as decoded: the backend converts
// them to the network input where it computes (upload_images), so a GPU receives a quarter of the
// bytes that float32 would take.
#pragma once

#include <stdint.h>

#include "kernels/augment_render.h"
#include "framework/core/targets.h"

typedef struct Batch {
    int64_t n, h, w;       // images and network input size
    uint8_t *images;       // (n, h, w, 3) interleaved RGB bytes, host memory, owned
    // Or, for a backend that renders the images itself: one recipe per image (owned) and the decoded
    // images they read (owned), each recipe's after the previous one's (render_recipe_bytes).
    RenderRecipe *recipes;
    uint8_t *arena;
    int64_t arena_bytes;
    int n_targets;
    TargetBox *targets;    // detection: every box of every image, grouped by image (owned)
    int32_t *labels;       // classification: one class per image (owned); NULL for detection
    int64_t *indices;      // dataset index of each image (owned), for reproducibility checks
} Batch;
