// What `yolopipe predict` runs: a model and its weights, from a run directory, a checkpoint
// directory or an exported safetensors file (framework/train/checkpoint.h), on a backend of its own.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/core/error.h"
#include "layers/graph.h"
#include "layers/model_spec.h"

typedef enum PredictDevice { PREDICT_DEVICE_AUTO, PREDICT_DEVICE_CPU, PREDICT_DEVICE_CUDA, PREDICT_DEVICE_COUNT } PredictDevice;

typedef struct PredictModel {
    char *weights;     // the safetensors file or checkpoint directory the weights came from (owned)
    ModelSpec *spec;   // built from the recorded YAML text with the recorded scale and nc (owned)
    int64_t nc;
    char **names;      // nc class names (owned)
    int64_t imgsz;     // train.imgsz of the run
    Backend *be;       // owned
    Graph *graph;      // batch 1, built for imgsz x imgsz (the largest letterboxed input), weights loaded (owned)
} PredictModel;

// Resolves `weights`: a run directory (its weights/best, else weights/last), a checkpoint directory
// (its EMA weights, exported through checkpoint_export to a temporary file) or an exported file. Reads
// the recorded model, scale, nc, names and imgsz (an export without them is an error asking to
// re-export; a classification model is refused), opens the backend `device` asks for (auto: a GPU when there is one), builds the graph
// for imgsz x imgsz inputs (imgsz: > 0 overrides the recorded one; a multiple of the largest stride)
// and loads the weights. Prints the device line on `out`. Errors are one line "path: message".
bool predict_model_open(const char *weights, PredictDevice device, int64_t imgsz, FILE *out, PredictModel **model,
                        Error *err);
void predict_model_destroy(PredictModel *m);  // accepts NULL

// The largest stride of the model's detection head (the letterbox pads to a multiple of it).
int64_t predict_model_stride(const PredictModel *m);
