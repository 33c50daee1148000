// Training: the experiment's dataset, model, loss, optimizer, EMA and validation in Ultralytics'
// training loop (engine/trainer.py), on this rank's part of the pipeline (framework/runtime/executor.h), with
// checkpoints that resume bit for bit under any partitioning. Every rank of the job calls it.
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "framework/config/config.h"
#include "framework/core/error.h"
#include "framework/runtime/transport.h"
#include "framework/train/optim.h"

typedef struct TrainerOptions {
    bool resume;  // continue <output.dir>/<name>/weights/last instead of starting a new run
    FILE *out;    // progress, tables and notices (stdout); world rank 0 writes them
    Transport *transport;  // the job's ranks (transport_local_create() for one process); borrowed
} TrainerOptions;

// Trains as configured; writes <output.dir>/<name>/ (config.yaml, results.csv, weights/last and
// weights/best). User errors (bad data, a model that does not fit the task, ...) come back in err;
// on ranks other than world rank 0 an error that every rank met alike comes back empty (rank 0
// reports it).
bool trainer_run(const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err);

// Validates the EMA weights of checkpoint `weights_dir` on the experiment's validation split and
// prints the metrics table (`yolopipe val`).
bool trainer_validate_checkpoint(const ExperimentConfig *cfg, const char *weights_dir, const TrainerOptions *opt,
                                 Error *err);

// The optimizer the trainer builds for an experiment: train.optimizer, `auto` resolved as Ultralytics
// does from the training images and the class count (optim_auto_choose), and the weight decay scaled
// to the accumulation.
typedef struct TrainerOptimizerChoice {
    OptimKind kind;
    double lr0, momentum, warmup_bias_lr;
    int64_t accumulate;   // optim_accumulate(train.nbs, train.batch)
    double weight_decay;  // optim_scaled_weight_decay of train.weight_decay
} TrainerOptimizerChoice;

TrainerOptimizerChoice trainer_optimizer_choice(const ExperimentConfig *cfg, int64_t n_train_images, int64_t nc);

// The GPUs this process can use (none in a build without CUDA), and why a CUDA backend cannot be
// had when there are none; shared by training's device.backend and predict's --device.
int trainer_gpu_count(void);
const char *trainer_no_gpu_reason(void);
