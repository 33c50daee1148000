// The schedule simulator (discrete events with the plan's costs on the plan's cluster) and what it
// writes: a Chrome-trace JSON and a text timeline.
//
// Cost model, per micro-batch and stage from the plan: FWD takes fwd_s, BWD bwd_input_s + bwd_weight_s,
// BWD_INPUT and BWD_WEIGHT one part each; the last stage computes the loss (plan->loss_s) at the
// start of each BWD or BWD_INPUT, as the executor does; LOAD takes no time (the loader prefetches;
// its throughput is a ceiling on the whole step, below). A rank runs its compute one pass at a time
// in program order.
//
// Placement (partition/placement.h): world ranks sit on nodes by parallel.rank_order; the pipeline
// simulated stands for every replica, which run alike. Communication overlaps compute: a SEND
// occupies the directed link (src, dst), not the rank, for latency + bytes / bandwidth of the pair's
// link (placement_p2p_link: intra inside a node, a share of the NICs across nodes), one message
// after another in send order; the matching RECV ends when the message has arrived (the rank idles
// until then). A cut between two stages of the same rank is a local hand-over and costs nothing.
//
// Gradient all-reduce (schedule/collective.h, over the rank's data-parallel group; nothing when
// replicas = 1): during a chunk's last BWD the plan's buckets start as the backward passes their
// ready_s (PipelinePlan.buckets), REDUCE_GRADS starts the rest of the stage's param_bytes, all on
// the rank's reduce channel one after another, overlapping later compute; zb-h1's split backward is
// not bucketed (the executor buckets whole backwards only): its REDUCE_GRADS reduces the whole stage.
// STEP waits for the rank's reductions, then for every rank (the per-batch loss all-reduce of
// PLAN_BATCH_REDUCE_BYTES over the world), then each rank runs its optimizer step and EMA update
// (plan->optimizer_s_per_byte x the param_bytes of its stages) and averages its stages' running
// statistics over its replicas (an all-reduce of their buffer_bytes).
//
// Shared cores (ClusterModel.cores_per_node > 0): the simulation advances in global time order;
// whenever ranks of a node compute at once (passes, loss, optimizer, inline loading) they share its
// cores as schedule/sharing.h models it (one core per single-threaded rank, else processor
// sharing), the rates recomputed at every start and end. A node holds copies of several pipeline
// ranks (replicas); a pipeline rank runs at the rate of its slowest copy. Without it every rate is 1
// and times are exact sums of the plan's costs.
//
// With gradient accumulation (plan->accumulate > 1) the batches that do not step are simulated too,
// without gradient reductions, optimizer and statistics average (the loss all-reduce stays).
//
// The data loader is a ceiling: step_s >= the images a node's stage-0 ranks load per step /
// cluster.loader_images_per_s (when set).
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "partition/plan.h"
#include "schedule/collective.h"
#include "schedule/program.h"

typedef struct SchedSpan {
    double start_s, end_s;  // compute: the pass; send: on the link, until arrival; receive: from reaching
                            // it to the message's arrival (the wait); REDUCE_GRADS: on the reduce link
} SchedSpan;

// What the step (a batch that ends an accumulation) is made of, along the critical rank (the last
// to reach the end of its program); the terms add up to step_s.
typedef struct SchedSimTerms {
    int critical_rank;
    double compute_s;    // its FWD, BWD, BWD_INPUT and BWD_WEIGHT passes (wall time)
    double bubble_s;     // its waits for messages not sent yet (the pipeline's fill and drain)
    double p2p_s;        // its waits for messages on their way (exposed point-to-point transfer)
    double allreduce_s;  // its wait at STEP for its gradient all-reduces, plus the running-statistics
                         // average of the rank that finishes last
    double loss_s;       // its loss passes (last stage) and the per-batch loss all-reduce
    double optimizer_s;  // the optimizer step and EMA of the rank that finishes last
    double loader_s;     // its inline loading (train.workers: 0), plus how far the loader's ceiling is above
                         // the rest
} SchedSimTerms;

// One gradient all-reduce (a bucket, or what REDUCE_GRADS started).
typedef struct SchedReduction {
    int rank, stage;
    int64_t bytes;
    CollectiveAlgo inter_algo;
    SchedSpan span;
} SchedReduction;

typedef struct SchedSim {
    int n_ranks;
    double step_s;                   // a batch that ends an accumulation: from the first instruction to
                                     // the last rank's optimizer and statistics average, or the loader's
                                     // ceiling when that is longer
    double batch_s;                  // a batch that does not (no gradient reduction, no optimizer);
                                     // step_s when plan->accumulate <= 1
    double mean_batch_s;             // ((accumulate - 1) batch_s + step_s) / accumulate
    double images_per_s;             // replicas x micro_batches x micro_batch_images / mean_batch_s
    double *busy_s;                  // (n_ranks): compute time (FWD, BWD, BWD_INPUT, BWD_WEIGHT)
    double *bubble;                  // (n_ranks): 1 - busy_s / step_s, the idle fraction of the step; the
                                     // bubble over ideal time of Narayanan et al. is (step_s - busy_s) / busy_s
    int64_t *peak_activation_bytes;  // (n_ranks): most activation bytes held at once, see sched_simulate
    int64_t *link_bytes;             // (n_ranks x n_ranks): [src * n_ranks + dst], bytes sent per step
                                     // and pipeline (local hand-overs on the diagonal excluded)
    SchedSpan **spans;               // (n_ranks)(program length): every instruction's span; STEP's is its
                                     // wait for the rank's reductions
    SchedSimTerms terms;
    int64_t p2p_bytes;               // bytes sent between ranks per step, every replica
    double allreduce_bytes;          // bytes sent in collectives per step (gradients, running statistics,
                                     // the loss), summed over every rank of the job
    double loader_floor_s;           // the loader's ceiling as a step time (0 without one)
    int n_reductions;
    SchedReduction *reductions;      // (n_reductions) in issue order
    SchedSpan *loss_spans;           // (micro_batches): the last stage's loss passes, by micro-batch
    SchedSpan loss_reduce;           // the per-batch loss all-reduce (every rank at once)
    SchedSpan *optimizer_spans;      // (n_ranks): optimizer step + EMA
    SchedSpan *statistics_spans;     // (n_ranks): the running statistics' average over the replicas
} SchedSim;

// Times a schedule that sched_validate accepted (a deadlocking one is an internal error). A stage
// holds its activation_bytes for a micro-batch from the start of its FWD to the end of its last
// backward part on that stage: BWD, or BWD_WEIGHT for zb-h1 (W still needs the saved inputs).
// The caller owns the result (sched_sim_destroy).
SchedSim *sched_simulate(const PipelinePlan *plan, const Schedule *s);
void sched_sim_destroy(SchedSim *sim);

// How many micro-batches' activations each of the n_ranks x chunks stages holds at once under a
// schedule (what the partitioner's memory cap needs before there is a plan): simulated on a plan of
// unit costs. Fails as sched_build does for combinations the schedule refuses.
bool sched_in_flight(SchedKind kind, int n_ranks, int chunks, int micro_batches, int *in_flight, Error *err);

// Writes a Chrome-trace JSON object (load it in Perfetto or chrome://tracing): complete ("X") events
// in microseconds, pid 0; tid r is rank r's compute ("F3", "B3", "W3"; chunk and stage in args, the
// last stage's "loss 3" before its backward, "optimizer" at the end), receive waits ("recv F3 c12 ←
// r0") and its running-statistics average ("average statistics"); each directed link and each rank's
// reduce channel has its own track after the ranks ("send F3 c12 → r2", "reduce s4", one per
// bucket), and one track holds the per-batch "loss all-reduce", so no track holds overlapping
// events. Categories fwd, bwd, wgrad, send, recv, reduce, loss, optimizer, each with its own "cname"
// colour; otherData carries the step's terms and bytes. It also draws a SchedSim that holds only
// spans, step_s and images_per_s (a measured batch: framework/runtime/executor.c): the step terms'
// arrays may then be NULL, and REDUCE_GRADS draws its instruction's own span.
void sched_trace_write(FILE *f, const PipelinePlan *plan, const Schedule *s, const SchedSim *sim);

// Prints a text timeline: a header line, then one row per rank of at most `width` columns (clamped to
// [24, 100]); each character is one time slice showing the pass running at its middle: F, B, W for a
// forward, backward (or B of zb-h1) and weight gradient, lower case for odd model chunks; L the
// last stage's loss, O the optimizer step; '.' idle.
void sched_timeline_print(FILE *f, const PipelinePlan *plan, const Schedule *s, const SchedSim *sim, int width);
