// The pipeline plan: what partition/ decides and schedule/ consumes (DESIGN.md "Plan"). Plain data,
// no tensors: schedule/ knows nothing about layers beyond what is here.
//
// Stage k (0-based, in pipeline order) owns the contiguous layers [first_layer, last_layer]. With
// interleaved schedules a rank owns several stages ("model chunks"): stage k runs on rank k % ranks
// as chunk k / ranks. A cut tensor is a layer output consumed by a later stage; it is sent straight
// from its producer's stage to every consuming stage (YOLO's skip connections jump over stages),
// never relayed. Times are per micro-batch.
#pragma once

#include <stdint.h>

enum { PLAN_MAX_STAGES = 64 };

// How world ranks are laid over pipelines and replicas (parallel.rank_order; framework/runtime/topology.h):
// a pipeline's ranks consecutive, or a stage's replicas consecutive.
typedef enum RankOrder {
    RANK_ORDER_PIPELINE_FIRST,
    RANK_ORDER_REPLICA_FIRST,
    RANK_ORDER_COUNT
} RankOrder;

typedef struct PlanStage {
    int first_layer, last_layer;   // inclusive
    double fwd_s;                  // forward of one micro-batch
    double bwd_input_s;            // backward, input-gradient part (zb-h1's B)
    double bwd_weight_s;           // backward, weight-gradient part (zb-h1's W); bwd = B + W
    int64_t param_bytes;           // parameters (gradients and optimizer state scale with it)
    int64_t activation_bytes;      // kept from forward to backward, per micro-batch in flight
    int64_t input_bytes;           // the network input it loads (stage 0 only), per micro-batch
} PlanStage;

typedef struct PlanCut {
    int id;                        // index in PipelinePlan.cuts
    int layer;                     // the producing layer
    int from_stage, to_stage;      // producer's stage < consumer's stage
    int64_t bytes;                 // per micro-batch (activation forward, same size of gradient backward)
} PlanCut;

// The link between two ranks: sending n bytes takes latency_s + n / bandwidth_bytes_per_s.
typedef struct LinkModel {
    double latency_s;
    double bandwidth_bytes_per_s;
} LinkModel;

typedef struct PipelinePlan {
    int n_stages;                  // stages = ranks per pipeline x chunks
    int n_ranks;                   // ranks per pipeline (parallel.stages)
    int chunks;                    // model chunks per rank (1 unless interleaved)
    int replicas;                  // data-parallel copies of the pipeline
    int micro_batches;             // per optimizer step and replica
    int64_t micro_batch_images;
    PlanStage stages[PLAN_MAX_STAGES];
    int n_cuts;
    PlanCut *cuts;                 // owned; ordered by (from_stage, layer, to_stage)
    LinkModel link;                // between pipeline neighbours (and any two ranks)
    LinkModel reduce_link;         // within a data-parallel group
} PipelinePlan;
