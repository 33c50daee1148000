// The schedule simulator (discrete events with the plan's costs) and what it writes: a Chrome-trace
// JSON and a text timeline.
//
// Cost model, per micro-batch and stage from the plan: FWD takes fwd_s, BWD bwd_input_s + bwd_weight_s,
// BWD_INPUT and BWD_WEIGHT one part each; LOAD and STEP take no time (the loader prefetches; the
// plan has no optimizer cost). A rank runs its compute passes one at a time in program order.
// Communication overlaps compute: a SEND occupies the directed link (src, dst), not the rank, for
// link.latency_s + bytes / link.bandwidth_bytes_per_s, one message after another in send order; the
// matching RECV ends when the message has arrived (the rank idles until then). A cut between two
// stages of the same rank is a local hand-over and costs nothing. REDUCE_GRADS is a ring all-reduce
// of the stage's param_bytes over the replicas on the rank's own reduce link,
// 2 (D - 1) / D x bytes / reduce_link bandwidth + 2 (D - 1) x reduce_link latency (0 when D = 1),
// overlapping later compute; STEP waits for the rank's reductions. All replicas run the same
// programs at the same times, so one pipeline is simulated.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "partition/plan.h"
#include "schedule/program.h"

typedef struct SchedSpan {
    double start_s, end_s;  // compute: the pass; send: on the link, until arrival; receive: from reaching
                            // it to the message's arrival (the wait); REDUCE_GRADS: on the reduce link
} SchedSpan;

typedef struct SchedSim {
    int n_ranks;
    double step_s;                   // from the first instruction to the last rank's STEP
    double images_per_s;             // replicas x micro_batches x micro_batch_images / step_s
    double *busy_s;                  // (n_ranks): compute time (FWD, BWD, BWD_INPUT, BWD_WEIGHT)
    double *bubble;                  // (n_ranks): 1 - busy_s / step_s, the idle fraction of the step; the
                                     // bubble over ideal time of Narayanan et al. is (step_s - busy_s) / busy_s
    int64_t *peak_activation_bytes;  // (n_ranks): most activation bytes held at once, see sched_simulate
    int64_t *link_bytes;             // (n_ranks x n_ranks): [src * n_ranks + dst], bytes sent per step
                                     // and pipeline (local hand-overs on the diagonal excluded)
    SchedSpan **spans;               // (n_ranks)(program length): every instruction's span
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
// in microseconds, pid 0; tid r is rank r's compute ("F3", "B3", "W3"; chunk and stage in args) and
// receive waits ("recv F3 c12 ← r0"); each directed link and each rank's reduce link has its own
// track after the ranks ("send F3 c12 → r2", "reduce s4"), so no track holds overlapping events.
// Categories fwd, bwd, wgrad, send, recv, reduce, each with its own "cname" colour.
void sched_trace_write(FILE *f, const PipelinePlan *plan, const Schedule *s, const SchedSim *sim);

// Prints a text timeline: a header line, then one row per rank of at most `width` columns (clamped to
// [24, 100]); each character is one time slice showing the pass running at its middle: F, B, W for a
// forward, backward (or B of zb-h1) and weight gradient, lower case for odd model chunks; '.' idle.
void sched_timeline_print(FILE *f, const PipelinePlan *plan, const Schedule *s, const SchedSim *sim, int width);
