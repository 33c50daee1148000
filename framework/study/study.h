// The study file (experiments/STUDY.md documents every key): a base experiment, the points to run
// (a sweep's product and/or an explicit list, filtered by `where:`), how to measure them, the
// cluster they are simulated on, how long a full training is and what GPU time costs. Loaded with
// every default filled in; every user error is "file:line:col: message".
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/core/error.h"

typedef enum StudyMode { STUDY_MODE_SIMULATE, STUDY_MODE_MEASURE, STUDY_MODE_BOTH, STUDY_MODE_COUNT } StudyMode;
extern const char *const study_mode_names[STUDY_MODE_COUNT];

// Where a value was written (1-based; line 0: a default): in the study file, or in the text of a
// "key=value" override (file is then its label "--set <key>").
typedef struct StudyPos {
    int line, col;
    const char *file;  // StudyConfig.path or one of its override_labels; NULL for a default
} StudyPos;

// One experiment override: `key` (dotted, "parallel.stages") = `value`, YAML text as `--set` takes it
// (a scalar's text, or a flow collection such as "[[0, 9], [10, 22]]").
typedef struct StudySetting {
    char *key, *value;
    StudyPos pos;  // of the value
} StudySetting;

// sweep: one key and its list of values; the points are the product of every axis, the first axis
// varying slowest.
typedef struct StudyAxis {
    char *key;
    StudyPos pos;          // of the key
    int n_values;
    StudySetting *values;  // key duplicated in each, for uniform handling
} StudyAxis;

// points: one explicit point, its settings in file order.
typedef struct StudyExplicitPoint {
    int n_settings;
    StudySetting *settings;
    StudyPos pos;
} StudyExplicitPoint;

// where: `lhs op rhs`, all must hold. lhs and rhs each name a swept key or a derived value
// (world, nodes, gpus_per_node) or are a literal (number, or a word compared as text).
typedef enum StudyCompare { STUDY_LT, STUDY_LE, STUDY_EQ, STUDY_NE, STUDY_GE, STUDY_GT } StudyCompare;
typedef struct StudyConstraint {
    char *text;  // as written, for "dropped: <text>" messages
    char *lhs, *rhs;
    StudyCompare op;
    StudyPos pos;
} StudyConstraint;

typedef struct StudyMeasure {
    int64_t steps;         // timed optimizer steps per point (default 6)
    int64_t warmup;        // untimed steps before them (default 2)
    int64_t takes;         // runs of each point, in rounds over the points; the fastest is kept (default 1)
    char *launcher;        // template with {world} (and optionally {nodes}); default "mpirun -np {world} --oversubscribe"
    double time_limit_s;   // per point, then the launched job is killed and the point recorded (default 600)
} StudyMeasure;

// A named device with peak rates (`device: {name: a100, peak_tflops: 312, efficiency: 0.45, ...}`),
// or one of the planner's named devices (`device: h100`), or a profile CSV from `yolopipe profile`.
typedef struct StudyDevice {
    char *name;             // "cpu", "h100", "a100", or the spec's own name
    char *profile;          // a profile CSV (resolved against the study file's folder), or NULL
    double peak_flops;      // 0: the planner's figure for `name`
    double efficiency;      // fraction of peak_flops training reaches (default 1 with a peak, else unused)
    int64_t memory_bytes;   // per device; 0: the planner's figure for `name`
    double memory_bytes_per_s;  // memory bandwidth (optimizer, EMA and loss estimates); 0: the planner's
} StudyDevice;

typedef struct StudyLink {
    double bandwidth_bytes_per_s;  // 0: the planner's default for the device
    double latency_s;
} StudyLink;

// cluster: where simulated points run. With a `nodes` list every node count is one more sweep axis:
// world = nodes x gpus_per_node, and parallel.replicas = world / parallel.stages (points where the
// stages do not divide the world are dropped with that reason).
typedef struct StudyCluster {
    bool present;
    int n_nodes;            // 0: world = parallel.stages x parallel.replicas, nodes = ceil(world / gpus_per_node)
    int64_t *nodes;         // (n_nodes) node counts, from a list or a range {from, to, factor}
    int64_t gpus_per_node;  // default 8
    StudyDevice device;
    StudyLink intra;        // between two GPUs of one node
    StudyLink inter;        // one NIC between nodes
    int64_t nics_per_node;  // default 1
    double loader_images_per_s;  // per node; 0: the loader never limits
    double cores_per_node;       // > 0: ranks of a node share this many cores (processor sharing); calibrate:
                                 // measures what they are worth when all compute at once
    double wait_cost;            // what a waiting rank takes from busy cores (ClusterModel.wait_cost); calibrate
                                 // measures it
    int64_t threads_per_rank;    // compute threads of a rank (OMP_NUM_THREADS of measured ranks); 0: unset
    bool calibrate;              // profile this machine before the points (study_calibrate.h)
    StudyPos pos;
} StudyCluster;

// train_for: turns a step into time to train.
typedef struct StudyTrainFor {
    bool present;
    int64_t epochs;          // default: the experiment's train.epochs
    int64_t images;          // training images per epoch; 0: counted from `dataset`
    char *dataset;           // an Ultralytics dataset YAML (resolved), or NULL
    double val_s_per_epoch;  // validation time added per epoch (default 0)
} StudyTrainFor;

typedef enum StudyPlatformKind { STUDY_PLATFORM_CLOUD, STUDY_PLATFORM_LOCAL } StudyPlatformKind;
typedef struct StudyPlatform {
    char *name;
    StudyPlatformKind kind;
    double on_demand_per_gpu_hour, spot_per_gpu_hour;  // cloud; spot 0: none
    double purchase_per_gpu;                           // local: price of one GPU's share of the cluster
    double years, utilisation;                         // local: amortisation period, fraction of time used
    double watts_per_gpu, electricity_per_kwh;         // local: power of one GPU's share, its price
} StudyPlatform;

typedef struct StudyConfig {
    char *path;        // the study file as given
    char *name;        // default: the file's base name
    char *experiment;  // resolved against the study file's folder
    int n_set;
    StudySetting *set; // applied to every point, before the point's own settings
    int n_axes;
    StudyAxis *axes;
    int n_points;
    StudyExplicitPoint *points;
    int n_where;
    StudyConstraint *where;
    int64_t batch_per_gpu;  // > 0: train.batch = batch_per_gpu x world for each point (weak scaling)
    StudyMode mode;         // default simulate
    StudyMeasure measure;
    StudyCluster cluster;
    StudyTrainFor train_for;
    int n_platforms;
    StudyPlatform *platforms;
    char *out;              // default studies/<name>, relative to the working directory
    int n_override_labels;
    char **override_labels; // "--set <key>" texts that positions of override values point to (owned)
} StudyConfig;

// Loads `path` and applies each override "key=value" (study keys, e.g. `mode=simulate` or
// `measure.steps=3`). Unknown keys, wrong types, empty sweeps, sweep keys no experiment has and values
// out of range are user errors "file:line:col: ...". The caller destroys *out.
bool study_config_load(const char *path, int n_overrides, char *const *overrides, StudyConfig **out, Error *err);
void study_config_destroy(StudyConfig *s);  // accepts NULL

// The number of study-file keys and the dotted name of key i ("measure.steps", "cost.local.years"),
// for documentation checks (experiments/STUDY.md has a row for each).
int study_key_count(void);
const char *study_key_name(int i);

// One line "key: value" for every key that decides the points' results (not name, out or the
// measure time limit), in a fixed order: --resume compares the lines a study began with to these.
void study_config_write_fingerprint(const StudyConfig *s, FILE *f);
// Whether two loadings of a study decide the same results, by the same keys as the fingerprint; the
// first key that differs goes to *key (static text), NULL when none.
bool study_config_same(const StudyConfig *a, const StudyConfig *b, const char **key);

// One point to run: the experiment overrides that make it (the study's set:, then the point's
// values, then what is derived: parallel.replicas from a cluster node count, train.batch from
// batch_per_gpu) and where it runs.
typedef struct StudyPoint {
    int n_settings;
    StudySetting *settings;  // owned copies, in the order config_load applies them
    int64_t world;           // parallel.stages x parallel.replicas
    int64_t nodes;           // ceil(world / cluster.gpus_per_node); 1 without a cluster
    char *label;             // "parallel.stages=2 parallel.schedule=1f1b" (the point's own values, then
                             // "nodes=4" with cluster node counts) for progress lines
} StudyPoint;

typedef struct StudyPoints {
    int n;
    StudyPoint *points;
    int n_dropped;
    char **dropped;          // one line per dropped combination: "<label>: <reason>" (owned)
} StudyPoints;

// Expands the sweep's product and the explicit points (each times the cluster's node counts), applies
// where: (to the product) and the derived settings, and drops (with the reason) combinations the base
// experiment rejects (config_load fails), a constraint excludes, whose stages do not divide the
// cluster's GPUs, or that repeat an earlier point. Fails when the base experiment no longer loads or
// nothing is left (a constraint naming an unknown value is already an error of study_config_load).
bool study_points_expand(const StudyConfig *s, StudyPoints *out, Error *err);
void study_points_clear(StudyPoints *p);
