// The optimizer: Ultralytics' parameter groups on PyTorch's SGD (Nesterov) and AdamW, gradient
// clipping as Ultralytics' optimizer_step does it, and the helpers that pick the optimizer and
// scale the weight decay as its trainer does (ultralytics 8.4 engine/trainer.py).
//
// An Optimizer updates an arbitrary list of parameters (views into memory the caller owns), so a
// pipeline stage can own just its layers. Its state lives in contiguous buffers packed in the order
// of that list (for a whole graph: the parameter buffer's layout minus the fixed tensors), and is
// name-addressable for checkpoints with PyTorch's state names.
//
// Parameters, gradients and state are memory of the optimizer's backend. The updates run there, each
// as one call over the whole chunk table (BackendOps' multi-tensor slots, uploaded once at
// creation): element-wise over fixed chunks, and the one reduction (the gradient norm) sums fixed
// chunks in double in a fixed order, so results do not depend on the number of threads.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "layers/graph.h"

typedef enum OptimKind { OPTIM_SGD, OPTIM_ADAMW, OPTIM_KIND_COUNT } OptimKind;

const char *optim_kind_name(OptimKind kind);  // "SGD", "AdamW"

// Ultralytics' three parameter groups (build_optimizer's g[0], g[1], g[2]; "lr/pg0".."lr/pg2" in
// its logs): weights with decay, batch-norm weights without, biases without (the group whose
// warm-up starts at warmup_bias_lr).
typedef enum OptimGroup { OPTIM_GROUP_WEIGHT, OPTIM_GROUP_BN, OPTIM_GROUP_BIAS, OPTIM_GROUP_COUNT } OptimGroup;

const char *optim_group_name(OptimGroup group);  // "weight", "bn", "bias"

// The group of a parameter with state-dict name `name` and builder flags (layers/builder.h).
OptimGroup optim_group_of(const char *name, unsigned flags);

enum {
    OPTIM_NBS = 64,  // Ultralytics' nominal batch size
};
#define OPTIM_CLIP_MAX_NORM 10.0  // optimizer_step's clip_grad_norm_(max_norm=10.0)
#define OPTIM_ADAMW_BETA2 0.999   // betas = (momentum, 0.999)
#define OPTIM_ADAMW_EPS 1e-8      // PyTorch's default

// accumulate = max(round(nbs / batch), 1), rounding half to even as Python's round does.
int64_t optim_accumulate(int64_t nbs, int64_t batch);
// weight_decay · batch · accumulate / nbs, evaluated in that order as Ultralytics does.
double optim_scaled_weight_decay(double weight_decay, int64_t batch, int64_t accumulate, int64_t nbs);

// What `optimizer: auto` picks. Ultralytics 8.4 computes iterations = ceil(n_images /
// max(batch, nbs)) · epochs; above 10 000 it picks MuSGD (lr 0.01, momentum 0.9), otherwise AdamW
// with lr round(0.002 · 5 / (4 + nc), 6) and momentum 0.9; either way the bias warm-up starts at 0.
// MuSGD (a Muon hybrid) is not implemented: SGD with MuSGD's lr and momentum stands in for it
// (Ultralytics before 8.4 picked exactly that SGD).
typedef struct OptimAutoChoice {
    OptimKind kind;
    double lr0;
    double momentum;        // the optimizer's own momentum (SGD) or beta1 (AdamW)
    double warmup_bias_lr;  // 0
} OptimAutoChoice;

OptimAutoChoice optim_auto_choose(int64_t n_images, int64_t batch, int64_t nbs, int64_t epochs, int nc);

// One tensor the optimizer updates.
typedef struct OptimParam {
    const char *name;  // state-dict name; copied by optim_create
    float *value;      // (n_elems) backend memory, not owned
    float *grad;       // (n_elems) backend memory, not owned
    int64_t n_elems;
    OptimGroup group;
} OptimParam;

// Fills params[] (room for g->n_params entries) with the trainable parameters of layers
// [layer_begin, layer_end) in table order, skipping buffers and fixed tensors (DFL's projection,
// which Ultralytics freezes); names point into g. Returns how many. The graph needs memory.
int optim_params_from_graph(const Graph *g, int layer_begin, int layer_end, OptimParam *params);

// Learning rate per group and momentum for one step (optim_schedule.h computes them).
typedef struct OptimHyper {
    double lr[OPTIM_GROUP_COUNT];
    double momentum;  // SGD's momentum, AdamW's beta1
} OptimHyper;

typedef struct Optimizer Optimizer;

// An optimizer on backend `be` (not owned; it must outlive the optimizer), whose memory the
// parameters and gradients are. weight_decay (already scaled) applies to OPTIM_GROUP_WEIGHT only.
// The caller keeps the parameters' memory alive; state starts at zero and the step count at 0.
// Destroy with optim_destroy.
Optimizer *optim_create(Backend *be, OptimKind kind, double weight_decay, const OptimParam *params, int n_params);
void optim_destroy(Optimizer *opt);  // accepts NULL

// ---- clipping (torch.nn.utils.clip_grad_norm_(max_norm=10)) ---------------------------------------
// The total norm spans every parameter of the model; when stages own parts of it, each computes
// its partial sum of squares, the caller adds the partials in stage order, and every stage scales
// its gradients by the same factor.

// Sum of squared gradients of this optimizer's parameters, in double, fixed order.
double optim_grad_sumsq(Optimizer *opt);
// min(max_norm / (sqrt(total_sumsq) + 1e-6), 1) as PyTorch computes it (a NaN norm gives NaN).
double optim_clip_factor(double total_sumsq, double max_norm);
// Multiplies every gradient by factor (nothing to do when it is 1).
void optim_grads_scale(Optimizer *opt, double factor);
// The three above for an optimizer that owns the whole model; returns the norm before clipping.
double optim_clip_grad_norm(Optimizer *opt, double max_norm);

// ---- the update --------------------------------------------------------------------------------

// One step with the given hyperparameters, then the step count goes up by one.
// SGD (dampening 0, Nesterov):   g += wd·p (when wd ≠ 0); b = momentum·b + g; p -= lr·(g + momentum·b)
//   (PyTorch starts b at g on the first step, which equals this with b = 0.)
// AdamW: p *= 1 − lr·wd; m = lerp(m, g, 1 − β1); v = β2·v + (1 − β2)·g²;
//   p -= lr / (1 − β1^t) · m / (sqrt(v) / sqrt(1 − β2^t) + eps), t the new step count.
// Each float operation in PyTorch's order (its CPU single-tensor path), scalars rounded to float.
void optim_step(Optimizer *opt, const OptimHyper *hyper);

OptimKind optim_kind(const Optimizer *opt);
int64_t optim_step_count(const Optimizer *opt);
void optim_set_step_count(Optimizer *opt, int64_t steps);  // when resuming

// ---- state, for checkpoints --------------------------------------------------------------------

// One state tensor: "<param name>.momentum_buffer" (SGD), "<param name>.exp_avg" and
// "<param name>.exp_avg_sq" (AdamW), PyTorch's names in optimizer.state_dict().
typedef struct OptimState {
    const char *name;  // owned by the optimizer
    float *data;       // (n_elems) backend memory, inside the optimizer's contiguous state buffer
    int64_t n_elems;
} OptimState;

int optim_state_count(const Optimizer *opt);
int64_t optim_state_elems(const Optimizer *opt);  // of all state tensors together
const OptimState *optim_state_get(const Optimizer *opt, int index);
// The state tensor with that name, or NULL.
const OptimState *optim_state_find(const Optimizer *opt, const char *name);
// Copies state tensor `index` to / from host memory of its n_elems floats.
void optim_state_download(const Optimizer *opt, int index, float *host);
void optim_state_upload(Optimizer *opt, int index, const float *host);
