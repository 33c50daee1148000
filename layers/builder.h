// Builder: how a module declares what it needs, once, for two uses.
//
// graph_create runs every layer's build twice with the same code: first without memory, to learn
// shapes, parameter names and counts, FLOPs and the scratch size (this is all `info` and the
// planner need); then, when a backend is given, again with memory: parameters become views into
// one contiguous buffer per graph (gradients in the same layout), buffers such as batch-norm
// running statistics into a second one, and activations are allocated. Nothing allocates later.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "framework/core/tensor.h"

typedef struct Graph Graph;
typedef struct Layer Layer;
typedef struct ConvWeightQueue ConvWeightQueue;  // layers/blocks.h

enum {
    PARAM_NO_GRAD = 1 << 0,   // a fixed tensor (DFL's projection): counted, never trained
    PARAM_NO_DECAY = 1 << 1,  // biases and batch-norm weights: no weight decay (Ultralytics' groups)
    PARAM_BUFFER = 1 << 2,    // not a parameter: running statistics, saved in the state dict only
};

typedef enum ParamInitKind {
    PARAM_INIT_FAN_IN_UNIFORM,  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's Conv2d/Linear default
    PARAM_INIT_CONST,           // every element = value
    PARAM_INIT_ARANGE,          // element i = i (DFL's projection weights 0..reg_max-1)
    PARAM_INIT_KIND_COUNT
} ParamInitKind;

typedef struct ParamInit {
    ParamInitKind kind;
    double value;    // PARAM_INIT_CONST
    int64_t fan_in;  // PARAM_INIT_FAN_IN_UNIFORM
} ParamInit;

enum { PARAM_NAME_MAX = 96, PARAM_MAX_DIMS = 4 };

// One entry of the graph's parameter table, named as in an Ultralytics state dict.
typedef struct ParamInfo {
    char name[PARAM_NAME_MAX];
    int ndim;
    int64_t dims[PARAM_MAX_DIMS];
    int64_t n_elems;
    unsigned flags;
    int layer;       // owning layer index
    int64_t offset;  // element offset in the graph's parameter (or buffer) storage
    ParamInit init;
} ParamInfo;

// A parameter as a module sees it: value and gradient (same element count), NULL without memory.
typedef struct Param {
    float *value;
    float *grad;  // NULL for buffers
    int64_t n_elems;
} Param;

typedef struct Builder Builder;

typedef struct BatchNormSettings {
    float eps, momentum;
} BatchNormSettings;

// The model's batch-norm settings. Ultralytics sets eps 1e-3 and momentum 0.03 in detection models
// (initialize_weights); classification models keep PyTorch's defaults, 1e-5 and 0.1.
BatchNormSettings builder_batchnorm_settings(const Builder *b);

Backend *builder_backend(const Builder *b);  // NULL while describing
Layer *builder_layer(const Builder *b);
const struct ModelSpec *builder_spec(const Builder *b);
// Records the stride of one Detect level (image size / feature map size), for the graph.
void builder_set_stride(Builder *b, int level, int64_t stride);
// Records the box bins per side of the model's detection head (1: no DFL), for the graph.
void builder_set_reg_max(Builder *b, int64_t reg_max);
// Image size the graph is built for.
int64_t builder_imgsz_h(const Builder *b);

// Appends "<name>." to the naming prefix (which starts as "model.<i>."); pop removes it.
void builder_push(Builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void builder_pop(Builder *b);

// Declares a parameter or buffer named prefix + name with the given dims. With memory it is
// initialised, unless the graph shares another graph's weights.
Param builder_param(Builder *b, const char *name, int ndim, const int64_t *dims, unsigned flags, ParamInit init);
// Sets every element of a declared parameter to `value` (an initialisation that depends on more than
// the parameter, e.g. Detect's bias priors); does nothing while describing or when the graph shares
// another graph's weights.
void builder_param_fill(Builder *b, Param p, float value);
// Sets a declared parameter to another's values (same element count): a deep copy such as Detect's
// one-to-one branches, at creation; does nothing while describing or when the graph shares another
// graph's weights.
void builder_param_copy(Builder *b, Param dst, Param src);
// The graph's split-backward queue (GraphOptions.split_backward), or NULL; owned by the graph.
ConvWeightQueue *builder_conv_weight_queue(const Builder *b);

// An activation (or activation gradient) tensor that lives as long as the graph, in the backend's
// activation type.
Tensor builder_tensor(Builder *b, Shape shape);
// n float32 values that live as long as the graph (batch statistics kept for backward).
float *builder_statistics(Builder *b, int64_t n);
// Temporary activation memory shared by all layers: valid only inside one kernel-level step (a
// ConvBlock's backward), never across calls into other blocks.
void *builder_scratch(Builder *b, int64_t n_elems);
// Reserves the backend's convolution workspace for d.
void builder_conv_workspace(Builder *b, const ConvDesc *d);
// Reserves the backend's attention workspace for a (pointers not read).
void builder_attention_workspace(Builder *b, const AttentionArgs *a);

// The most elements a parameter or tensor, a layer's parameters or activations, or a graph's, may
// hold: 2^40 (4 TiB of float32), far beyond any model yolopipe can train, and small enough that
// nothing computed from such counts (bytes, micro-batches in flight, sums over layers) overflows
// int64_t. A model past it is a user error at the row that crosses it.
#define BUILDER_MAX_ELEMS ((int64_t)1 << 40)

// The product of n non-negative factors, an element count; past BUILDER_MAX_ELEMS the builder
// remembers that the layer is too large (graph_create then fails at its row) and
// BUILDER_MAX_ELEMS + 1 is returned, so that callers' arithmetic stays in range.
int64_t builder_elems(Builder *b, int n, const int64_t *factors);

// Counts FLOPs the way Ultralytics' profiler (thop) does, and PyTorch leaf modules.
void builder_count_ops(Builder *b, double ops);
void builder_count_leaves(Builder *b, int64_t n);
// Work that thop does not count (attention's softmax, in multiply-adds per image), for the cost
// model only (Layer.uncounted_ops).
void builder_count_uncounted_ops(Builder *b, double ops);
// Module instances that Ultralytics shares across a whole model, so that its leaf-module count
// holds each once: Conv.default_act (the model's activation) and RepConv.default_act (SiLU whatever
// the model's activation, a class-level instance of its own).
typedef enum SharedModule { SHARED_MODULE_CONV_ACT, SHARED_MODULE_REPCONV_ACT, SHARED_MODULE_COUNT } SharedModule;
// Counts the shared instance `which` as a leaf the first time a layer of the model uses it.
void builder_count_shared_module(Builder *b, SharedModule which);
