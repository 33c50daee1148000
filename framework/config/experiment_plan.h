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

// What a plan is for: a device (named, or custom: a study's peak x efficiency), where the costs come
// from, and the cluster.
typedef struct PlanTarget {
    const char *device_name;       // "cpu", "h100", "a100" (cost_device_find); NULL: h100 for cuda
                                   // experiments, else cpu
    const CostDevice *device;      // a custom device (borrowed; start from a named one's figures and change
                                   // what differs); overrides device_name
    const char *profile_path;      // per-layer times (and the step terms it has) from `yolopipe profile`;
                                   // NULL: estimates from the device
    const ClusterModel *cluster;   // borrowed; NULL: every rank on one node, the device's links
} PlanTarget;

typedef struct ExperimentPlan {
    Graph *graph;          // shapes only, at the micro-batch size and train.imgsz (owned)
    CostProfile *profile;  // measured per-layer times, or NULL (owned)
    CostModel *cost;       // owned
    CostDevice device;     // the device's figures (its name borrowed from the table or the target)
    int64_t micro_batch_images;
    PipelinePlan plan;     // its cuts and buckets are owned; plan.cluster is the target's, with the
                           // experiment's parallel.rank_order
    PartitionReport report;
    Schedule *schedule;    // validated (owned)
    // Where the step terms came from: "profile" (measured) or "estimate" (the device's memory bandwidth).
    const char *optimizer_source, *loss_source;
} ExperimentPlan;

// Loads the experiment's model for planning: its scale, and as many classes as the synth: block
// generates (else the model file's count; the count only sizes the head). The caller destroys *out.
bool experiment_model_load(const ExperimentConfig *cfg, ModelSpec **out, Error *err);

// The device an experiment is planned for when none is named: "h100" for cuda experiments, else "cpu".
const char *experiment_plan_default_device(const ExperimentConfig *cfg);

// The default cluster for a device: one node holding every rank, the device's links, no loader
// ceiling, no processor sharing.
ClusterModel experiment_plan_default_cluster(const CostDevice *device);

// Plans cfg's run of `spec` (borrowed; it must outlive the plan) for `target`. The step terms:
//   optimizer_s_per_byte: the profile's measured optimizer + EMA per parameter byte, else
//     cost_optimizer_passes(train.optimizer is AdamW, or auto) / the device's memory_bytes_per_s;
//   loss_s per micro-batch: the profile's per image x the micro-batch, else ~8 streaming passes over
//     the head's output (reading it and the assignment, writing its gradient: an estimate) /
//     memory_bytes_per_s;
//   the loader's ceiling: the cluster's; on the default cluster the profile's images/s per worker x
//     train.workers x the stage-0 ranks (one loader each), else none;
//   load_s (train.workers: 0, stage 0 loads on its training thread): the micro-batch / the profile's
//     images/s per worker; 0 without a profile (the loading is then not modelled).
// A cluster with links that cannot carry (not positive), or NICs missing where ranks span nodes, is
// refused with a message starting "cluster:". User errors (an unknown device, parallel settings the
// model or the schedule cannot take) come back
// positioned at the experiment's key; an unknown device_name's message starts with "--device".
bool experiment_plan_build(const ExperimentConfig *cfg, const ModelSpec *spec, const PlanTarget *target,
                           ExperimentPlan *out, Error *err);
void experiment_plan_clear(ExperimentPlan *p);  // frees what the plan owns and zeroes it
