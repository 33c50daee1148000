// One study point's numbers: what the planner predicts for it (the same code as `yolopipe plan`), and
// what a measured run of it recorded in its measured.json.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/core/error.h"
#include "framework/study/study.h"

// The modelled terms of a step, as the summary and points.csv show them (term_<name>_ms).
typedef enum StudyTerm {
    STUDY_TERM_COMPUTE,    // the critical rank's forward and backward passes
    STUDY_TERM_BUBBLE,     // its waits for messages not sent yet (the pipeline's fill and drain)
    STUDY_TERM_P2P,        // its waits for messages on their way
    STUDY_TERM_ALLREDUCE,  // the gradient all-reduce not hidden behind backward
    STUDY_TERM_OPTIMIZER,  // optimizer and EMA step
    STUDY_TERM_LOSS,       // the loss on the last stage and its per-batch reduction
    STUDY_TERM_LOADER,     // the step's excess over its compute when the data loader is slower
    STUDY_TERM_COUNT
} StudyTerm;
extern const char *const study_term_names[STUDY_TERM_COUNT];

typedef struct StudyPrediction {
    double step_s, images_per_s;
    double bubble;                  // mean idle fraction of the pipeline's ranks
    int64_t images_per_step;
    int64_t train_epochs;           // the point's train.epochs
    int64_t peak_activation_bytes;  // the most activation bytes any rank holds at once
    int64_t memory_bytes;           // the largest device memory a stage needs (partition.h's formula)
    int64_t memory_per_gpu;         // the device's memory; 0: unknown
    int64_t p2p_bytes;              // sent between stages per step, all pipelines
    int64_t allreduce_bytes;        // gradient bytes all-reduced per step, all ranks
    double terms_s[STUDY_TERM_COUNT];
    char partition[1024];           // the planned stages as parallel.partition takes them: "[[0, 11], [12, 22]]"
} StudyPrediction;

// Plans and simulates point p of study s on its cluster (schedule/simulate.h's SchedSimTerms are the
// terms), with per-layer costs from costs->profile when not NULL (else the study's device.profile,
// else the FLOP estimate). A point the planner refuses (too many stages for the model, nothing fits the
// memory) is a user error in *err, which the study records as an invalid point. step_s is the mean
// batch time (gradient accumulation spreads the optimizer step over its batches), as measured.
typedef struct StudyCosts {
    const char *profile;    // per-layer and step costs measured here (cluster.calibrate), or NULL
    double cores_per_node;  // the calibrated worth of the node's cores, or 0 for the study's figure
    double wait_cost;       // the calibrated ClusterModel.wait_cost, or < 0 for the study's figure
    const char *trace;      // where to write the simulated timeline (a Chrome trace), or NULL
} StudyCosts;
bool study_point_simulate(const StudyConfig *s, const StudyPoint *p, const StudyCosts *costs, StudyPrediction *out,
                          Error *err);

typedef struct StudyMeasurement {
    double step_s;                  // median batch time after the warm-up batches
    double images_per_s;            // images per batch / step_s
    int n_timed;                    // batches the median is over
    int64_t peak_activation_bytes;  // the most any rank held
    int64_t peak_rss_bytes;         // the largest resident set of any rank
    int64_t param_bytes;            // the most parameter bytes any rank holds (-1: not recorded)
    double optimizer_s;             // median optimizer step of the timed batches that step (0: none)
} StudyMeasurement;

// Reads a run's measured.json (written by `yolopipe train`), skipping `warmup` batches (at least
// the first). Errors name the file.
bool study_point_read_measured(const char *path, int64_t warmup, StudyMeasurement *out, Error *err);
