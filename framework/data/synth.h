// Synthetic shapes datasets written to disk in Ultralytics' layout, so that training, validation and
// the reference checks run without downloading anything (`yolopipe synth`, and the `synth:` block of
// an experiment's dataset).
//
// Detection (DIR is the output directory):
//   DIR/images/{train,val}/NNNNNN.png   RGB, imgsz × imgsz
//   DIR/labels/{train,val}/NNNNNN.txt   one "class cx cy w h" line per object, normalised, 6 decimals
//   DIR/data.yaml                       path: ., train: images/train, val: images/val, nc, names
// Classification:
//   DIR/{train,val}/<class name>/NNNNNN.png   one shape per image, classes in turn
//   DIR/data.yaml                             path: ., train: train, val: val, nc, names (sorted, as
//                                             Ultralytics numbers class folders)
//
// Every random choice is drawn from framework/core/rng.h streams keyed by (seed, split, image index), so a
// given configuration always produces byte-identical files, whatever the number of threads.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/core/error.h"
#include "framework/core/yaml_doc.h"

typedef enum SynthTask { SYNTH_TASK_DETECT, SYNTH_TASK_CLASSIFY, SYNTH_TASK_COUNT } SynthTask;

// Class k of a dataset with K classes is shape k, for k < K (the first K of this order).
typedef enum SynthShape {
    SYNTH_SHAPE_CIRCLE,
    SYNTH_SHAPE_SQUARE,
    SYNTH_SHAPE_TRIANGLE,
    SYNTH_SHAPE_CROSS,
    SYNTH_SHAPE_RING,
    SYNTH_SHAPE_STAR,
    SYNTH_SHAPE_COUNT
} SynthShape;

extern const char *const synth_task_names[SYNTH_TASK_COUNT];    // "detect", "classify"
extern const char *const synth_shape_names[SYNTH_SHAPE_COUNT];  // "circle", "square", ...

typedef struct SynthConfig {
    SynthTask task;
    const char *out_dir;  // borrowed; the dataset directory to create
    int64_t n_train;      // images per split
    int64_t n_val;
    int64_t imgsz;        // square images of imgsz × imgsz pixels
    int64_t n_classes;    // the first n_classes shapes
    int64_t seed;         // 0 or more
    bool force;           // replace an existing dataset directory
    FILE *progress;       // borrowed; progress lines go here, NULL for none
} SynthConfig;

typedef struct SynthSummary {
    int64_t n_images;  // both splits
    int64_t n_boxes;   // detection labels written (0 for classification)
} SynthSummary;

// Defaults, the same for both tasks: detect, 2000 train and 200 val images of 256 × 256, 4 classes
// (circle, square, triangle, cross), seed 0; out_dir NULL, no progress.
SynthConfig synth_config_default(void);

// "detect" or "classify"; false for anything else.
bool synth_task_parse(const char *text, SynthTask *out);

// Sets an integer setting by its key: "train", "val" (1 to 1000000), "imgsz" (32 to 4096), "classes"
// (1 to 6), "seed" (0 or more). Fails with "<what> must be ..., found N" (no position; callers that
// have one add it) for a value out of range, and with "unknown synth setting" for another key.
bool synth_config_set_int(SynthConfig *cfg, const char *key, int64_t value, const char *what, Error *err);

// Reads a `synth:` block, a mapping with any of the keys task, train, val, imgsz, classes, seed, over
// the defaults. Errors are positioned at the offending key or value. Overwrites *cfg; out_dir stays
// NULL for the caller to set.
bool synth_config_from_yaml(YamlDoc *yd, const yaml_node_t *node, SynthConfig *cfg, Error *err);

// Writes the dataset to cfg->out_dir. An existing non-empty directory is an error unless cfg->force is
// set and it holds a data.yaml (a previous dataset, so that a mistyped --out cannot delete an unrelated
// folder). Files are written to a sibling "<out_dir>.partial-XXXXXX" that is renamed into place at the
// end, so out_dir never holds half a dataset. Parallel over images with OpenMP. Fills *summary when
// not NULL.
bool synth_generate(const SynthConfig *cfg, SynthSummary *summary, Error *err);
