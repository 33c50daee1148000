// The cost model: what one micro-batch costs in each layer (forward and backward time, parameter,
// activation and output bytes), estimated from FLOPs and a device throughput or taken from a
// profile that `yolopipe profile` measured. Built from a graph's description only: a Graph created
// without a backend (GraphOptions.be = NULL) has every number it needs.
//
// Backward is split the way zb-h1 schedules it: B, the input gradient, and W, the weight gradient.
//   - FLOP estimate: backward costs twice the forward FLOPs, B = W = forward time. A layer whose
//     inputs are all the network input (layer 0 in every YOLO) has no input gradient to compute
//     (the executor skips it), so B = 0 and its backward is W alone; a layer without trained
//     parameters (Upsample, Concat) has W = 0 and its backward is B alone.
//   - Profile: the measured backward time is split by the same rules: all of it to W for a layer
//     reading only the network input, all to B for a layer without trained parameters, otherwise
//     as the profile measured it (its bwd_weight_s: `yolopipe profile` times B and W apart), or
//     half and half in a profile without it.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/core/dtype.h"
#include "framework/core/error.h"
#include "layers/graph.h"
#include "partition/plan.h"

typedef struct LayerCost {
    double flops;              // forward FLOPs of one micro-batch (Ultralytics' GFLOPs x 1e9 x images)
    double fwd_s;              // forward of one micro-batch
    double bwd_input_s;        // backward, input-gradient part (B)
    double bwd_weight_s;       // backward, weight-gradient part (W)
    int64_t param_bytes;       // float32 parameters, fixed ones included
    int64_t activation_bytes;  // kept from forward to backward: the graph's activation_elems x the activation
                               // type's size (4 until cost_model_set_activation_type), scaled to the micro-batch
    int64_t output_bytes;      // the layer's output for one micro-batch: what a cut tensor carries
    int64_t buffer_bytes;      // float32 running statistics (batch norm), averaged over replicas each step
} LayerCost;

typedef struct CostModel {
    int n_layers;
    int64_t micro_batch;    // images per micro-batch
    int64_t input_bytes;    // the network input of one micro-batch
    int64_t profile_batch;  // 0: FLOP estimate; otherwise the profile's batch, times scaled by micro_batch / profile_batch
    LayerCost *layers;      // owned; n_layers entries, entry i = layer i
} CostModel;

// Activations (kept ones, cut tensors, the input) stored as `act` instead of float32: bf16 and fp16
// halve their bytes (the batch-norm statistics counted among them stay float32; they are a few
// hundred bytes per layer).
void cost_model_set_activation_type(CostModel *m, DType act);

// A device the planner knows: effective rates for the estimates, its memory, and the links of the
// node it comes in (what a one-node plan uses when no cluster is given).
typedef struct CostDevice {
    const char *name;
    double flops_per_s;          // effective training FLOP/s (the FLOP estimate)
    double memory_bytes_per_s;   // effective memory bandwidth (optimizer, EMA and loss estimates)
    int64_t memory_bytes;        // per device; 0: no cap
    LinkModel link;              // point-to-point between two devices of one node
    LinkModel collective;        // a ring step of an all-reduce inside the node (bus bandwidth)
    LinkModel nic;               // one NIC between nodes
    int nics_per_node;
    // Messages move only inside the sender's and receiver's transport calls (MPI over shared memory
    // on the CPU: no progress thread, no single-copy), so a message sent before a pass leaves when
    // the pass's first layer ends (ClusterModel.host_progress).
    bool host_progress;
} CostDevice;

// "cpu", "h100" or "a100" (see cost.c for the figures and where they come from); NULL for any other
// name. cost_device_names lists them for messages ("cpu, h100 or a100").
const CostDevice *cost_device_find(const char *name);
extern const char cost_device_names[];

// Memory passes over the parameters per optimizer step (gradient norm, unscale/clip, the update,
// zeroing the gradients, the EMA update; see cost.c): SGD and AdamW.
double cost_optimizer_passes(bool adamw);

// The FLOP estimate for micro-batches of `micro_batch` images at the graph's input size. The caller
// destroys the result.
CostModel *cost_model_estimate(const Graph *g, int64_t micro_batch, double flops_per_s);

// A measured profile: row i holds layer i's times for one pass of `batch` images of imgsz x imgsz.
typedef struct CostProfileRow {
    char module[32];  // as written in the model YAML ("Conv", "nn.Upsample")
    double fwd_s, bwd_s;
    // The weight-gradient part of bwd_s (Zero Bubble's W, timed with the split backward and scaled to
    // bwd_s), or -1 when not measured: the cost model then splits half and half.
    double bwd_weight_s;
} CostProfileRow;

typedef struct CostProfile {
    char *path;            // the file it was read from (owned), NULL when made in memory
    int64_t batch, imgsz;
    int n_layers;
    CostProfileRow *rows;  // owned
    // The step's costs besides the layers (a `step` line each; 0 when the file has none: an older
    // profile, or one taken without a dataset for the loss and the loader). Per parameter byte means
    // per byte of the float32 parameters the stage holds (LayerCost.param_bytes summed, fixed ones
    // included), so that a stage's cost is the figure times its PlanStage.param_bytes.
    double optimizer_s_per_param_byte;      // one optimizer step as the trainer takes it: gradient norm,
                                            // clipping, the update (the experiment's SGD or AdamW), zeroing
    double ema_s_per_param_byte;            // one EMA update (parameters and running statistics)
    double loss_s_per_image;                // the loss, forward and backward, of one micro-batch of `batch`
                                            // images at imgsz (detection: assigner and gradient), per image
    double loader_images_per_s_per_worker;  // training images one loader thread decodes and augments per
                                            // second, as the experiment's augment: section says, at imgsz
} CostProfile;

// An empty profile of n_layers rows (times 0) for a writer to fill. The caller destroys it.
CostProfile *cost_profile_create(int n_layers, int64_t batch, int64_t imgsz);
void cost_profile_destroy(CostProfile *p);  // accepts NULL

// The CSV format: the header `layer,module,fwd_s,bwd_s,batch,imgsz,bwd_weight_s`, then one line per
// layer in order, times in seconds (bwd_weight_s empty when not measured; files from before it, with
// the header and lines without that column, still load); then, for each of the step's other costs that is not 0, one line
// `step,<what>,<value>,<unit>`, in this order:
//   step,optimizer,<s>,s_per_param_byte
//   step,ema,<s>,s_per_param_byte
//   step,loss,<s>,s_per_image
//   step,loader,<images/s>,images_per_s_per_worker
// The unit is written out so that the file says what each number is; the reader requires it.
void cost_profile_write(const CostProfile *p, FILE *f);
// Reads a CSV written by cost_profile_write, with or without step lines (files written before they
// existed load with those fields 0). Each step line at most once, after the layers, with its unit.
// Malformed files are user errors "path:line:col: ...".
bool cost_profile_load(const char *path, CostProfile **out, Error *err);

// The cost model from a profile of the same model at the graph's input size (else a user error at
// the profile's path). When the profile's batch differs from micro_batch, times are scaled linearly
// by micro_batch / batch and profile_batch records it so that the caller can say so. Bytes come from
// the graph as in cost_model_estimate. The caller destroys *out.
bool cost_model_measured(const Graph *g, int64_t micro_batch, const CostProfile *profile, CostModel **out, Error *err);

void cost_model_destroy(CostModel *m);  // accepts NULL
