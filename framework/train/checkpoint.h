// Checkpoints: a directory per checkpoint, written atomically (framework/core/fsutil.h), so a crash
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

#include "framework/config/config.h"
#include "framework/train/ema.h"
#include "framework/core/error.h"
#include "framework/core/fsutil.h"
#include "framework/core/safetensors.h"
#include "framework/train/loss_scale.h"
#include "framework/train/optim.h"
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
    LossScale loss_scale;         // fp16's dynamic loss scale (1 without fp16) and the steps it skipped
} TrainProgress;

// What a checkpoint holds tensors of: the model (its parameters and buffers in backend memory),
// its EMA copy and the optimizer state. The optimizer and EMA may be NULL (nothing saved or loaded
// for them).
typedef struct CheckpointModel {
    Graph *graph;
    ModelEma *ema;
    Optimizer *optimizer;
} CheckpointModel;

// Writes the checkpoint directory `dir` of a single-stage model (replacing an existing one atomically).
bool checkpoint_save(const char *dir, const TrainProgress *progress, const ExperimentConfig *cfg,
                     const CheckpointModel *model, Error *err);

// The steps of checkpoint_save for a pipeline, whose stages live on different ranks: one rank begins
// the atomic directory (checkpoint_dir_begin) and shares fs_atomic_dir_path() with the others (a
// file system every rank sees); each stage writes its file there; after all have, the first rank
// writes the manifest (stage k's inclusive layer range in layers[k]) and commits.
bool checkpoint_dir_begin(const char *dir, FsAtomicDir **out, Error *err);
bool checkpoint_save_stage(const char *dir, int stage, const TrainProgress *progress, const CheckpointModel *model,
                           Error *err);
bool checkpoint_write_manifest(const char *dir, const TrainProgress *progress, const ExperimentConfig *cfg,
                               int n_stages, const int (*layers)[2], Error *err);

// What resuming a run makes of a checkpoint: its position must be a batch of this experiment.
typedef struct CheckpointResume {
    int64_t epochs;             // train.epochs
    int64_t batches_per_epoch;
    int64_t passes_per_batch;   // forward passes per batch (replicas x micro-batches), which bn_batches counts
    int64_t seed;               // train.seed
    bool loss_scaling;          // fp16's dynamic loss scale; without it the scale is 1
} CheckpointResume;

// Everything read from a checkpoint is untrusted: every manifest and metadata value is parsed strictly
// and range-checked (against the other values, the model, and `resume` unless NULL), every tensor's
// dtype and shape must be the model's whole, and weights, buffers, EMA and optimizer state must be
// finite. Errors are one line naming the file (with line:col in the manifest), the key or tensor and
// the reason.

// Reads `dir` into progress and the model's tensors, looking each up by name in every stage file (so
// the model may be a stage of another partitioning than the one that wrote it). Every tensor the
// model has must be present with its shape; the optimizer's step count and the EMA's update count
// come from the stage files' metadata.
bool checkpoint_load(const char *dir, const CheckpointResume *resume, TrainProgress *progress,
                     const CheckpointModel *model, Error *err);

// Reads only the manifest, checked as above (its stage ranges against no particular model).
bool checkpoint_read_progress(const char *dir, const CheckpointResume *resume, TrainProgress *progress, Error *err);

// Writes the EMA weights (what validation scores) as one safetensors file with Ultralytics'
// state-dict names and shapes, loadable with safetensors.torch.load_file into the PyTorch model. The
// manifest is checked as above; each EMA tensor must have the model's tensor of its name beside it,
// with the same dtype and shape, and finite values.
//
// The file's metadata also records what running the model needs (`yolopipe predict`), read back by
// framework/train/predict_model.h: the task, the model YAML's file name and text, the scale, nc, the
// class names (a JSON list of strings) and train.imgsz, from the checkpoint's config.yaml.
bool checkpoint_export(const char *dir, const char *out_path, Error *err);

#define EXPORT_META_TASK "yolopipe.task"
#define EXPORT_META_MODEL_FILE "yolopipe.model_file"
#define EXPORT_META_MODEL_YAML "yolopipe.model_yaml"
#define EXPORT_META_SCALE "yolopipe.scale"
#define EXPORT_META_NC "yolopipe.nc"
#define EXPORT_META_NAMES "yolopipe.names"
#define EXPORT_META_IMGSZ "yolopipe.imgsz"

// Loads an export's tensors (`file`, read with safetensors_read) into g's parameters and buffers by
// name: each must be there as F32 of the model's shape with finite values (a user error naming the
// file and tensor otherwise); other tensors (num_batches_tracked) are ignored.
bool checkpoint_load_export(const SafetensorsFile *file, Graph *g, Error *err);
