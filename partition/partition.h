// The stage partitioner: cuts a graph's layers into contiguous stages and finds the cut tensors
// between them, filling a PipelinePlan (partition/plan.h) for schedule/.
//
// A stage's time per micro-batch is its layers' forward and backward compute plus its share of the
// link: for every cut tensor it receives or sends, one message forward (the activation) and one
// backward (its gradient), each costing link.latency_s + bytes / link.bandwidth_bytes_per_s. A
// tensor consumed by several later stages is sent to each of them directly (YOLO's skip connections
// from the backbone jump several stages), so a producer pays once per consuming stage.
//
// The automatic partition minimises the slowest stage's time exactly (a dynamic program over stage
// boundaries that carries, per boundary, how many stages each still-needed tensor will be sent to),
// subject to the memory cap. A stage's memory on its device:
//   PARTITION_PARAM_COPIES x param_bytes + in_flight x (activation_bytes + input_bytes)
// with activation_bytes = its layers' activations plus the cut tensors it receives (kept for its
// backward), input_bytes = the network input (stage 0 only). With chunks > 1 a device holds `chunks`
// stages, and each stage gets an equal share of the cap (sufficient, and exact for chunks = 1).
//
// Each stage's gradient buckets (PipelinePlan.buckets) follow the executor's rule (partition/plan.h):
// walking the stage's layers from the last, a bucket closes after a layer's backward once the
// gradients not yet bucketed, from that layer's first parameter to the last one not bucketed, reach
// PLAN_REDUCE_BUCKET_ELEMS floats; its ready_s is the backward time of the layers walked so far.
//
// What cannot be cut (the rule the executor relies on): a stage boundary falls between layers,
// never inside one; the last layer (Detect or Classify, whose output the loss needs) is in the last
// stage, which contiguity guarantees; the network input is read by layer 0 alone (model_spec_load's
// rule), so stage 0 is the only stage that loads images. No module kind needs more today.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/core/error.h"
#include "layers/graph.h"
#include "partition/cost.h"
#include "partition/plan.h"

// Copies of the parameters a device keeps: values, gradients and AdamW's two moments (SGD keeps
// three; the cap is checked for the larger).
enum { PARTITION_PARAM_COPIES = 4 };

typedef enum PartitionKind {
    PARTITION_KIND_AUTO,     // the dynamic program
    PARTITION_KIND_RANGES,   // explicit inclusive layer ranges, one per stage
    PARTITION_KIND_BALANCE,  // layers per stage
    PARTITION_KIND_COUNT
} PartitionKind;

typedef struct PartitionOptions {
    int n_ranks;                 // ranks per pipeline
    int chunks;                  // model chunks per rank; n_stages = n_ranks x chunks
    int replicas, micro_batches; // copied into the plan
    LinkModel link;              // prices cut tensors; latency 0 and bandwidth INFINITY make them free
    ClusterModel cluster;        // copied into the plan (the partitioner prices every cut with `link`)
    int64_t memory_cap_bytes;    // per device; 0: no cap
    const int *in_flight;        // n_stages entries: micro-batches whose activations each stage holds
                                 // at once under the schedule (not owned); NULL: micro_batches each
    PartitionKind kind;
    const int64_t (*ranges)[2];  // PARTITION_KIND_RANGES: n_stages [first, last] pairs (not owned)
    const int64_t *balance;      // PARTITION_KIND_BALANCE: n_stages layer counts (not owned)
} PartitionOptions;

// One row of `yolopipe plan`'s stage table; bytes and times per micro-batch.
typedef struct PartitionStageReport {
    int first_layer, last_layer;
    int64_t params;            // parameter elements
    double gflops;             // forward of one micro-batch
    int64_t activation_bytes;  // as PlanStage.activation_bytes
    int in_flight;
    int64_t memory_bytes;      // the device memory formula above
    int64_t recv_bytes;        // cut tensors received (their gradients go back: the same again)
    int64_t send_bytes;        // cut tensors sent, once per consuming stage
    double compute_s;          // forward + backward
    double link_s;             // all messages, both directions
    double time_s;             // compute_s + link_s: what the partitioner balances
} PartitionStageReport;

typedef struct PartitionReport {
    int n_stages;
    PartitionStageReport stages[PLAN_MAX_STAGES];
    int slowest_stage;
} PartitionReport;

// Partitions g (whose costs `cost` describes) as opt says and fills *plan (its cuts are allocated:
// release them with partition_plan_clear) and *report. On a user error (too many stages, ranges or a
// balance that do not cover the model, nothing fitting the memory cap, a boundary that cuts what
// cannot be cut) returns false with a message that has no position: the caller adds the config's.
bool partition_create(const Graph *g, const CostModel *cost, const PartitionOptions *opt, PipelinePlan *plan,
                      PartitionReport *report, Error *err);

// Frees the plan's cuts and buckets and zeroes it. Accepts a zeroed plan.
void partition_plan_clear(PipelinePlan *plan);
