// The pipeline plan: what partition/ decides and schedule/ consumes (DESIGN.md "Plan"). Plain data,
// no tensors: schedule/ knows nothing about layers beyond what is here.
//
// Stage k (0-based, in pipeline order) owns the contiguous layers [first_layer, last_layer]. With
// interleaved schedules a rank owns several stages ("model chunks"): stage k runs on rank k % ranks
// as chunk k / ranks. A cut tensor is a layer output consumed by a later stage; it is sent straight
// from its producer's stage to every consuming stage (YOLO's skip connections jump over stages),
// never relayed. Times are per micro-batch unless said otherwise.
#pragma once

#include <stdbool.h>
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
    int64_t buffer_bytes;          // running statistics, averaged over the replicas at every step
    int first_bucket, n_buckets;   // its gradient buckets in PipelinePlan.buckets
    // The layer each pass starts with (forward: the first; backward: the last), input- and weight-
    // gradient parts: where a pass first lets messages move under ClusterModel.host_progress.
    double fwd_first_layer_s, bwd_first_layer_input_s, bwd_first_layer_weight_s;
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

// The cluster a plan runs on (DESIGN.md "Cluster model"). World rank w (placed by rank_order:
// partition/placement.h) sits on node w / gpus_per_node; two ranks of one node talk over `intra`,
// two ranks of different nodes over one NIC each (`inter`), and a node's nics_per_node NICs are
// shared by its ranks' inter-node traffic that runs at once. Collectives (schedule/collective.h) run
// their in-node steps over `intra_collective` (NCCL's "bus bandwidth" of a ring inside the node,
// usually above one point-to-point stream's) and their cross-node steps over the NICs.
typedef struct ClusterModel {
    int gpus_per_node;            // ranks per node; 0: every rank on one node
    LinkModel intra;              // point-to-point, two ranks of one node
    LinkModel intra_collective;   // one ring step of a collective inside a node
    LinkModel inter;              // one NIC, between two nodes
    int nics_per_node;            // >= 1 when ranks span nodes
    RankOrder rank_order;         // how world ranks map to (pipeline rank, replica)
    double loader_images_per_s;   // the data loader's ceiling per node; 0: no ceiling
    // CPU ranks oversubscribing cores (schedule/sharing.h): with cores_per_node > 0, ranks of a node
    // computing at once share its cores, one core per single-threaded rank (time slices), processor
    // sharing for ranks of several threads. 0: every rank has its own cores. Fractional: what the
    // node's cores do together in units of one computing alone (cores that slow each other down
    // through shared caches and memory count for less; a study calibrates it).
    double cores_per_node;
    int threads_per_rank;         // compute threads of one rank (>= 1 with cores_per_node)
    // With cores_per_node: what a rank that waits (polls the transport, framework/core/poll_sleep.h)
    // takes from the computing ones when no core is idle, as a fraction of one core's speed.
    double wait_cost;
    // A message moves only when its sender calls the transport after the receiver has answered its
    // header (a rendezvous without a progress thread): the executor tests what is in flight between
    // layers, so a message sent before a pass leaves when that pass's first layer ends, and at once
    // when the sender waits instead. false: the transport moves it on its own (NCCL on the GPU).
    bool host_progress;
} ClusterModel;

// Gradient buckets: during a chunk's last whole backward (BWD, not zb-h1's split one) the executor
// starts an all-reduce each time the finished layers' gradients reach PLAN_REDUCE_BUCKET_ELEMS
// floats (framework/runtime/executor.c, executor_backward_bucketed); REDUCE_GRADS reduces the rest.
enum { PLAN_REDUCE_BUCKET_ELEMS = 1 << 20 };

// The per-batch all-reduce over every rank of the job after the program (the trainer's BatchWire:
// six loss parts and the squared gradient norm, as doubles); framework/train/trainer.c asserts it.
enum { PLAN_BATCH_REDUCE_BYTES = 7 * 8 };

// One bucket started inside a stage's last backward.
typedef struct PlanBucket {
    int stage;
    int64_t bytes;                 // float32 gradients
    double ready_s;                // backward time (profiled seconds from the start of the stage's BWD,
                                   // its loss excluded) after which the bucket's layers are done
} PlanBucket;

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
    int n_buckets;
    PlanBucket *buckets;           // owned; by stage, in the order the backward closes them
    ClusterModel cluster;
    // Step terms. The loss of one micro-batch on the last stage, computed at the start of its
    // backward (the executor's executor_loss); the optimizer step with gradient clipping, zeroing and
    // the EMA update, per parameter byte of a rank's stages (all memory-bound passes).
    double loss_s;
    double optimizer_s_per_byte;
    // Loading one micro-batch's images on stage 0's rank when it loads them on its training thread
    // (train.workers: 0): the trainer loads the whole batch before the rank's program starts; 0 when
    // a loader's threads prefetch them (their ceiling is the cluster's).
    double load_s;
    // Batches per optimizer step (gradient accumulation, Ultralytics' round(nbs / batch)); only the
    // batch that ends an accumulation reduces the gradients and steps. 0 counts as 1.
    int accumulate;
} PipelinePlan;
