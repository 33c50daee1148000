// The experiment's data as every command that reads it prepares it: the dataset generated from the
// synth: block when it is missing, and the training loader's options from the train: and augment:
// sections. `yolopipe train` and `yolopipe profile` (its loader timing) share these.
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "framework/config/config.h"
#include "framework/data/loader.h"

// Generates the dataset when cfg->data does not exist and the experiment has a synth: block (into
// the data file's folder for detection, data.yaml inside it; into cfg->data itself for
// classification), printing progress to `progress`. Does nothing otherwise: a missing dataset
// without a synth: block is for the caller's open to report.
bool experiment_data_generate(const ExperimentConfig *cfg, FILE *progress, Error *err);

// Opens the experiment's dataset for its task (dataset_open). Data of the other task's layout (a
// dataset YAML for `task: classify`, a folder for `task: detect`) is reported at the experiment's
// `task` (classify) or `data` (detect) value, where the fix belongs. The caller destroys *ds.
bool experiment_data_open(const ExperimentConfig *cfg, Dataset **ds, Error *err);

// The training loader of the experiment: Ultralytics' defaults (loader_options_train) for train.batch
// and train.seed, with train.workers threads and the augment: section's gains. The caller sets share
// (which part of each batch this rank loads).
LoaderOptions experiment_train_loader_options(const ExperimentConfig *cfg);
