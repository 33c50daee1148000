// Single-process training: the experiment's dataset, model, loss, optimizer, EMA and validation
// in Ultralytics' training loop (engine/trainer.py), with checkpoints that resume bit for bit.
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "framework/config.h"
#include "framework/error.h"

typedef struct TrainerOptions {
    bool resume;  // continue <output.dir>/<name>/weights/last instead of starting a new run
    FILE *out;    // progress, tables and notices (stdout)
} TrainerOptions;

// Trains as configured; writes <output.dir>/<name>/ (config.yaml, results.csv, weights/last and
// weights/best). User errors (bad data, a model that does not fit the task, ...) come back in err.
bool trainer_run(const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err);

// Validates the EMA weights of checkpoint `weights_dir` on the experiment's validation split and
// prints the metrics table (`yolopipe val`).
bool trainer_validate_checkpoint(const ExperimentConfig *cfg, const char *weights_dir, FILE *out, Error *err);
