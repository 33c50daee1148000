// An experiment's pipeline plan: every step of DESIGN.md's data flow but the execution. The model's
// graph (shapes only), its costs, the partition into stages and each pipeline rank's validated
// program. `yolopipe plan` prints it; the trainer builds the same on every rank (a pure function of
// the experiment, so the ranks agree without talking) and executes it.
#pragma once

#include <stdbool.h>

#include "framework/config/config.h"
#include "framework/core/error.h"
#include "layers/graph.h"
#include "partition/cost.h"
#include "partition/partition.h"
#include "schedule/program.h"

// A device kind the planner knows: its link between ranks and its memory.
typedef struct PlanDevice {
    const char *name;
    LinkModel link;
    int64_t memory_bytes;  // per device; 0: no cap
    double flops_per_s;    // the FLOP estimate's throughput (partition/cost.h's cost_device_find)
} PlanDevice;

typedef struct ExperimentPlan {
    Graph *graph;          // shapes only, at the micro-batch size and train.imgsz (owned)
    CostProfile *profile;  // measured per-layer times, or NULL (owned)
    CostModel *cost;       // owned
    PlanDevice device;
    int64_t micro_batch_images;
    PipelinePlan plan;     // its cuts are owned
    PartitionReport report;
    Schedule *schedule;    // validated (owned)
} ExperimentPlan;

// Loads the experiment's model for planning: its scale, and as many classes as the synth: block
// generates (else the model file's count; the count only sizes the head). The caller destroys *out.
bool experiment_model_load(const ExperimentConfig *cfg, ModelSpec **out, Error *err);

// Plans cfg's run of `spec` (borrowed; it must outlive the plan) for device `device_name` ("cpu",
// "h100"; NULL: h100 for cuda experiments, else cpu), with per-layer costs from the profile CSV
// `profile_path` (NULL: the FLOP estimate). User errors (parallel settings the model or the schedule
// cannot take) come back positioned at the experiment's key.
bool experiment_plan_build(const ExperimentConfig *cfg, const ModelSpec *spec, const char *device_name,
                           const char *profile_path, ExperimentPlan *out, Error *err);
void experiment_plan_clear(ExperimentPlan *p);  // frees what the plan owns and zeroes it
