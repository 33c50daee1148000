// Checkpoints: a directory per checkpoint, written atomically (framework/fsutil.h), so a crash
// leaves either the previous complete checkpoint or the new one:
//   manifest.yaml          where training stands (epoch, batch, iteration, optimizer steps, EMA
//                          updates, best fitness, seed: every random draw is a pure function of
//                          the seed and these positions, so they are the RNG state), and which
//                          layers each stage file holds
//   config.yaml            the resolved experiment configuration
//   stage-<k>.safetensors  stage k's tensors, named as in an Ultralytics state dict: the model's
//                          parameters and buffers (with each batch norm's num_batches_tracked),
//                          the EMA copy under "ema.", the optimizer state under "optimizer.",
//                          gradients accumulated since the last optimizer step under "grad."
// Tensors are looked up by name when loading, so a checkpoint loads under any partitioning.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/config.h"
#include "framework/ema.h"
#include "framework/error.h"
#include "framework/optim.h"
#include "layers/graph.h"

enum { CHECKPOINT_FORMAT_VERSION = 1 };

// Where a run stands; what resuming needs besides the tensors.
typedef struct TrainProgress {
    int64_t epoch;                // epoch in progress, from 0 (= epochs when training is complete)
    int64_t batch;                // next batch within that epoch
    int64_t iteration;            // Ultralytics' ni of that batch, counted over the run
    int64_t last_step_iteration;  // ni of the last optimizer step (-1: none yet)
    int64_t optimizer_steps;
    int64_t bn_batches;           // training forward passes: the batch norms' num_batches_tracked
    double best_fitness;          // -1 before the first validation
    int64_t seed;
} TrainProgress;

// What a checkpoint holds tensors of: the model (its parameters and buffers in backend memory),
// its EMA copy and the optimizer state. The optimizer and EMA may be NULL (nothing saved or loaded
// for them).
typedef struct CheckpointModel {
    Graph *graph;
    ModelEma *ema;
    Optimizer *optimizer;
} CheckpointModel;

// Writes the checkpoint directory `dir` (replacing an existing one atomically).
bool checkpoint_save(const char *dir, const TrainProgress *progress, const ExperimentConfig *cfg,
                     const CheckpointModel *model, Error *err);

// Reads `dir` into progress and the model's tensors. Every tensor the model has must be present with
// its shape; the optimizer step count and EMA update count are restored. Errors name the file.
bool checkpoint_load(const char *dir, TrainProgress *progress, const CheckpointModel *model, Error *err);

// Reads only the manifest (for `export` and for checks before building a model).
bool checkpoint_read_progress(const char *dir, TrainProgress *progress, Error *err);

// Writes the EMA weights (what validation scores) as one safetensors file with Ultralytics'
// state-dict names and shapes, loadable with safetensors.torch.load_file into the PyTorch model.
bool checkpoint_export(const char *dir, const char *out_path, Error *err);
