// The executor: runs this rank's program of the validated schedule (schedule/program.h) on a backend,
// exchanging cut tensors and gradients through a transport (DESIGN.md's last arrow).
//
// The rank holds one or more model chunks (plan stages; several only with interleaved schedules).
// A chunk is a stage graph (layers/graph.h, layers [first_layer, last_layer]) that owns the stage's
// contiguous parameter, gradient and running-statistics buffers, plus more "slot" graphs sharing
// those weights: one activation set per micro-batch in flight. A micro-batch takes a slot at the
// first instruction that touches it on that chunk and frees it after the last (its backward, or
// zb-h1's weight pass, or the send of its input gradients), so a chunk has exactly as many slots as
// the schedule keeps micro-batches in flight there (1f1b: at most the pipeline depth; gpipe: all).
//
// Messages: every receive of a batch is posted when the batch starts (into buffers of its own, so
// they can arrive in any order and early; tags name direction, micro-batch and cut) and waited for
// at its RECV instruction, with the transport's timeout naming what is awaited. A send copies the
// tensor into a pooled buffer and is posted without waiting; the buffer returns to the pool when the
// transport reports it done. Gradient reduction over the replicas (only in a batch that ends a
// gradient accumulation): during a chunk's last backward, each time the finished layers' gradients
// reach EXECUTOR_BUCKET_ELEMS a non-blocking all-reduce of them starts while earlier layers still
// run backward; REDUCE_GRADS starts the rest, and STEP waits for all of them.
//
// The loss is computed on the last stage, at the backward of each micro-batch, from the targets the
// last stage loaded (no labels travel through the pipeline); each micro-batch's loss is normalised
// on its own, as in a single process accumulating micro-batches.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/data/batch.h"
#include "framework/config/config.h"
#include "framework/config/experiment_plan.h"
#include "framework/eval/nms.h"
#include "framework/runtime/transport.h"
#include "layers/graph.h"

enum {
    EXECUTOR_BUCKET_ELEMS = PLAN_REDUCE_BUCKET_ELEMS,  // 4 MiB of float gradients per all-reduce bucket
    EXECUTOR_QUEUED_MEASURED_BATCHES = 8,  // batches whose layer times a GPU backend measures (after the first)
};

typedef struct ExecutorOptions {
    const ExperimentConfig *cfg;
    const ModelSpec *spec;        // borrowed; must outlive the executor
    const ExperimentPlan *ep;     // borrowed; the plan and the schedule
    Transport *transport;         // borrowed; its data operations take backend memory (transport_staged_create)
    Backend *be;                  // borrowed
    int64_t max_side;             // graphs are built for max_side x max_side inputs (multi-scale's largest)
} ExecutorOptions;

typedef struct ExecutorChunk {
    int stage;                    // plan stage
    int layer_begin, layer_end;   // layers [layer_begin, layer_end)
    Graph *graph;                 // slot 0: owns the stage's weights (the optimizer and EMA work on it)
    int n_slots;
    Graph **slots;                // (n_slots); slots[0] == graph
    int *slot_micro;              // micro-batch in each slot, -1 when free
    int64_t *layer_param_offset;  // (layer_end - layer_begin + 1): first gradient element of each layer
    int64_t slot_activation_bytes;  // saved activations one slot holds (see ExecutorStats)
} ExecutorChunk;

// Loss parts summed over micro-batches (last stage only; zero elsewhere).
typedef struct ExecutorLoss {
    double box, cls, dfl, ce;
    double n;          // micro-batches (or validation batches) summed
    double instances;  // ground-truth boxes seen
} ExecutorLoss;

// This replica's share of one training batch.
typedef struct ExecutorBatch {
    const Batch *data;  // stage 0: images; last stage: targets/labels; (n = micro_batches x micro) images
    int64_t side;       // square input size of this batch
    bool reduce;        // the batch ends a gradient accumulation: all-reduce over the replicas
    float loss_scale;   // the loss gradient is multiplied by it, and so are the parameter gradients
                        // that come back (fp16's dynamic loss scaling; 1 otherwise)
} ExecutorBatch;

// What this rank's training batches moved and held (validation left out), for the run's measured
// record (framework/train: measured.json).
//
// Saved activations are counted as the planner counts a stage's PlanStage.activation_bytes
// (partition/partition.c), so that peak_activation_bytes compares with the simulator's
// SchedSim.peak_activation_bytes: per slot, its layers' tensors kept from forward to backward
// (Graph.activation_elems: outputs, intermediate tensors, batch-norm statistics; with zb-h1 also
// each convolution's output gradient kept for the weight pass, which the planner leaves out) plus
// the cut tensors the stage receives, at the size the graphs were built for (the largest
// multi-scale side), in the activation type. Not counted: output gradients (dout), the network
// input, scratch, weights, gradients, optimizer state and message buffers. A slot holds them from
// its micro-batch's first instruction (LOAD or RECV_ACT) to its last (BWD, BWD_WEIGHT or
// SEND_GRAD), a little longer than the simulator's FWD-to-last-backward.
typedef struct ExecutorStats {
    int64_t batches;                // training batches run (the first included)
    int64_t reducing_batches;       // of them, those that all-reduced gradients over the replicas
    int64_t p2p_bytes;              // sent point to point to other ranks: activations forward, gradients
                                    // backward (a hand-over between two chunks of this rank left out)
    int64_t allreduce_bytes;        // gradient bytes this rank handed to all-reduces (the payload, not
                                    // what the algorithm moves on the wire)
    int64_t peak_activation_bytes;  // most bytes of saved activations in occupied slots at once
} ExecutorStats;

typedef struct Executor Executor;

// Builds this rank's chunks. User errors (a model that does not fit) come back in err.
bool executor_create(const ExecutorOptions *opt, Executor **out, Error *err);
void executor_destroy(Executor *ex);  // accepts NULL; waits for sends still in flight

int executor_n_chunks(const Executor *ex);
ExecutorChunk *executor_chunk(Executor *ex, int c);
bool executor_loads_images(const Executor *ex);   // holds stage 0
bool executor_loads_targets(const Executor *ex);  // holds the last stage (computes the loss)

// Runs this rank's program for one batch: forwards, backwards, messages and, with b->reduce, the
// gradient reduction; returns at STEP with the summed gradients in the chunks' buffers (the caller
// steps the optimizer). Adds this rank's loss parts to *loss. With `record`, keeps the instructions'
// measured spans for executor_trace_write.
void executor_train_batch(Executor *ex, const ExecutorBatch *b, bool record, ExecutorLoss *loss);

// This rank's counts so far (ExecutorStats).
ExecutorStats executor_stats(const Executor *ex);

// Forward-only pass of one validation batch of n images at side x side through the pipeline
// (running statistics). Stage 0 passes `images`; the last stage gets the raw network output in
// host_out (n x output elements per image) and, when targets is not NULL, adds the loss to *loss.
void executor_forward(Executor *ex, int64_t n, int64_t side, const uint8_t *images, float *host_out,
                      const Batch *targets, ExecutorLoss *loss);
// Output elements per image of the network at side x side (last stage).
int64_t executor_output_elems(Executor *ex, int64_t side);

// Writes the layers' compute times measured during this run's training batches (the mean over every
// replica's micro-batch passes at train.imgsz, the first batch left out; on a GPU backend only the
// next EXECUTOR_QUEUED_MEASURED_BATCHES, because measuring there synchronises after every layer) as a profile CSV
// (partition/cost.h) at world rank 0: `yolopipe plan --profile` then predicts the step from the
// run's own layer times. Collective.
bool executor_profile_write(Executor *ex, const char *path, Error *err);

// Gathers the spans recorded by the last executor_train_batch(record = true) of every rank at world
// rank 0, which writes replica 0's pipeline as a Chrome trace in the simulator's format
// (schedule/simulate.h) to path. Collective: every rank calls it.
bool executor_trace_write(Executor *ex, const char *path, Error *err);
