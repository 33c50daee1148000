// The experiment file: one YAML mapping per run (DESIGN.md "Experiment file and command line"),
// resolved into an ExperimentConfig with every default filled in. The keys, their types, ranges and
// defaults are one table in config.c; experiments/SCHEMA.md documents each of them (a test keeps the
// two in step).
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/core/dtype.h"
#include "framework/core/error.h"
#include "framework/data/synth.h"
#include "partition/partition.h"
#include "schedule/program.h"

typedef enum ConfigTask { CONFIG_TASK_DETECT, CONFIG_TASK_CLASSIFY, CONFIG_TASK_COUNT } ConfigTask;
typedef enum ConfigOptimizer {
    CONFIG_OPTIMIZER_AUTO,
    CONFIG_OPTIMIZER_SGD,
    CONFIG_OPTIMIZER_ADAMW,
    CONFIG_OPTIMIZER_COUNT
} ConfigOptimizer;
typedef enum ConfigTransport {
    CONFIG_TRANSPORT_AUTO,  // NCCL when every rank of a node has its own GPU, else MPI
    CONFIG_TRANSPORT_MPI,   // MPI; GPU tensors through host staging buffers
    CONFIG_TRANSPORT_NCCL,
    CONFIG_TRANSPORT_COUNT
} ConfigTransport;
typedef enum ConfigBackend { CONFIG_BACKEND_AUTO, CONFIG_BACKEND_CPU, CONFIG_BACKEND_CUDA, CONFIG_BACKEND_COUNT } ConfigBackend;
typedef enum ConfigPrecision {
    CONFIG_PRECISION_FP32,
    CONFIG_PRECISION_TF32,  // float32 storage, convolutions and GEMMs on TF32 tensor cores (CUDA)
    CONFIG_PRECISION_BF16,
    CONFIG_PRECISION_FP16,
    CONFIG_PRECISION_COUNT
} ConfigPrecision;

// The spelling of each enum value in the experiment file, indexed by the enum.
extern const char *const config_task_names[CONFIG_TASK_COUNT];
extern const char *const config_optimizer_names[CONFIG_OPTIMIZER_COUNT];
extern const char *const config_precision_names[CONFIG_PRECISION_COUNT];
// The activations' element type of a precision (tf32 stores float32).
DType config_precision_activation_type(ConfigPrecision p);
// Batches per optimizer step for a global batch: Ultralytics' max(round(nbs / batch), 1), round half
// to even as Python's.
int64_t config_accumulate(int64_t nbs, int64_t batch);

enum { CONFIG_MAX_STAGES = 64 };

// parallel.partition: `auto`, explicit inclusive layer ranges [[0, 9], [10, 22]], or {balance: [10, 13]}.
typedef struct ConfigPartition {
    PartitionKind kind;
    int n;                                  // ranges or balance entries
    int64_t ranges[CONFIG_MAX_STAGES][2];   // PARTITION_KIND_RANGES: first and last layer
    int64_t balance[CONFIG_MAX_STAGES];     // PARTITION_KIND_BALANCE: layers per stage
} ConfigPartition;

// The synth: block: how to generate the dataset when `data` does not exist yet (framework/data/synth.h).
typedef struct ConfigSynth {
    bool present;
    bool task_given;    // the block names its task; otherwise it follows the experiment's
    SynthConfig synth;  // out_dir and progress are set by whoever generates
} ConfigSynth;

typedef struct TrainConfig {
    int64_t epochs, max_steps, batch, imgsz;
    int64_t max_skipped_steps;  // stop (an error) after this many optimizer steps in a row skipped for non-finite gradients
    double multiscale;
    ConfigOptimizer optimizer;
    double lr0, lrf;
    bool cos_lr;
    double momentum, weight_decay, warmup_epochs, warmup_momentum, warmup_bias_lr;
    int64_t nbs;
    double box, cls, dfl;
    int64_t close_mosaic;
    int64_t seed;
    int64_t workers;
} TrainConfig;

// Where detection training images are composed: the loader's threads (host) or the backend
// (kernels/augment_render.h); auto: the backend when it is a GPU.
typedef enum ConfigRender { CONFIG_RENDER_AUTO, CONFIG_RENDER_HOST, CONFIG_RENDER_BACKEND, CONFIG_RENDER_COUNT } ConfigRender;

typedef struct AugmentConfig {
    double hsv_h, hsv_s, hsv_v, translate, scale, fliplr, mosaic;
    ConfigRender render;
} AugmentConfig;

typedef struct ValConfig {
    int64_t period, max_det;
    double conf, iou;
} ValConfig;

typedef struct ParallelConfig {
    int64_t stages, replicas, micro_batches, chunks;
    SchedKind schedule;
    ConfigPartition partition;
    RankOrder rank_order;
    ConfigTransport transport;
    int64_t recv_timeout;  // seconds a rank waits for a message before ending the job (0: forever)
} ParallelConfig;

typedef struct DeviceConfig {
    ConfigBackend backend;
    ConfigPrecision precision;
    bool deterministic;  // CUDA: deterministic cuDNN algorithms only (Ultralytics' deterministic=True)
} DeviceConfig;

typedef struct OutputConfig {
    char *dir;   // relative to the working directory, as Ultralytics' runs/
    bool trace;
    bool plots;  // pictures in the run directory (Ultralytics' plots=True): images with boxes, curves
} OutputConfig;

// Where a key got its value: the file (or "--set <key>") and the 1-based position; line 0 while
// the key still holds its default.
typedef struct ConfigOrigin {
    const char *file;  // cfg->path or a string owned by the config
    int line, col;
} ConfigOrigin;

typedef struct ExperimentConfig {
    char *path;     // the experiment file as given
    char *name;     // run name (default: the file's base name)
    ConfigTask task;
    char *model;    // model YAML, resolved against the experiment file's folder
    char *scale;    // NULL: the model's first scale
    char *data;     // dataset YAML (detect) or image-folder root (classify), resolved likewise
    ConfigSynth synth;
    TrainConfig train;
    AugmentConfig augment;
    ValConfig val;
    ParallelConfig parallel;
    DeviceConfig device;
    OutputConfig output;
    ConfigOrigin *origins;  // one per key, in config_key_name order (owned)
    char **override_labels; // "--set <key>" texts the origins point to (owned)
    int n_override_labels;
} ExperimentConfig;

// Loads `path` and applies each override "section.key=value" in order (value in YAML syntax, e.g.
// `train.lr0=0.02` or `parallel.partition=[[0, 9], [10, 22]]`). Unknown keys, wrong types and values
// out of range are user errors positioned in the file (or naming the --set argument). The caller
// destroys *out.
bool config_load(const char *path, int n_overrides, char *const *overrides, ExperimentConfig **out, Error *err);
void config_destroy(ExperimentConfig *cfg);  // accepts NULL

// Writes every key with its resolved value as a YAML experiment file that config_load reads back
// to the same configuration.
void config_write_yaml(const ExperimentConfig *cfg, FILE *f);

// A user error about the value of `key` ("train.batch"), reported where that value was written
// (or at the file's start, saying the key holds its default). Returns false.
bool config_error_at(const ExperimentConfig *cfg, const char *key, Error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// For --resume: the first key whose value differs between the run's saved configuration and this
// one, among the keys that change what training computes (everything but train.max_steps,
// train.max_skipped_steps, train.workers, val.*, output.* and name), or NULL when they agree.
const char *config_resume_mismatch(const ExperimentConfig *saved, const ExperimentConfig *now);

// The number of keys and the dotted name of key i ("train.lr0"), for documentation checks.
int config_key_count(void);
const char *config_key_name(int i);
// Whether key i holds a path (resolved against the experiment file's folder, or the working
// directory for --set), so that a study can resolve such values against its own folder.
bool config_key_is_path(int i);
