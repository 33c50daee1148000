// Graph: the layers of one model, their shapes, parameters and FLOPs, and (with a backend) the
// memory to run forward and backward.
//
// Pipeline stages: a graph may cover the contiguous layer range [layer_begin, layer_end) only. Every
// layer is still parsed and described (their shapes are needed), but parameters, passes and memory
// belong to the range. An earlier layer whose output a layer of the range reads (a cut tensor, or the
// network input) is an "external producer": only its `out` and `dout` are allocated, at its built
// shape; the executor writes received activations into `out` and sends back `dout`.
//
// Micro-batch slots: a graph created with share_weights uses another graph's parameters, gradients,
// running statistics and scratch, and owns only its activations (one set per micro-batch in flight).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "framework/core/error.h"
#include "layers/builder.h"
#include "layers/layer.h"
#include "layers/model_spec.h"

typedef struct GraphOptions {
    int64_t batch;           // images per forward pass
    int64_t imgsz_h, imgsz_w;
    Backend *be;             // NULL: describe only (shapes, parameters, FLOPs), no memory
    uint64_t seed;           // parameter initialisation
    // Zero-initialised fields below keep a whole-model graph that owns its weights.
    int layer_begin, layer_end;  // passes, parameters and memory for these layers only; layer_end 0: all
    // Uses this graph's parameters, gradients, buffers and scratch (nothing is initialised); it must
    // have the same spec and range, a scratch at least as large, and outlive the new graph.
    const Graph *share_weights;
    // Allows graph_backward_input_layers / graph_backward_weight: each convolution with weight
    // gradients keeps the gradient at its output between the two (one more activation per conv).
    bool split_backward;
    // Also computes dL/d(network input) into Graph.dinput (for comparisons with a reference; training
    // never needs it).
    bool input_grad;
} GraphOptions;

// Fields marked [range] cover the layers [layer_begin, layer_end) only; the others the whole model.
// Per-layer fields (Layer.n_params, ops, out_shape, ...) are filled for every layer.
struct Graph {
    const ModelSpec *spec;   // not owned; must outlive the graph
    Backend *be;
    int n_layers;
    Layer *layers;           // owned
    int layer_begin, layer_end;  // the range this graph runs; [0, n_layers) unless GraphOptions gave one
    int n_params;            // [range]
    ParamInfo *params;       // [range] parameters and buffers in declaration order, offsets into this
                             // graph's storage (owned)
    int64_t param_elems;     // [range] parameters (incl. fixed ones)
    int64_t grad_elems;      // [range] parameters that receive gradients
    int64_t buffer_elems;    // [range] running statistics
    int64_t activation_elems;  // [range] (external producers' out/dout not included)
    int64_t scratch_elems;   // [range]
    int64_t leaf_modules;    // [range]
    double ops;              // [range] ops of one image's forward pass, counted as Ultralytics does
    BatchNormSettings batchnorm;
    int64_t strides[8];      // Detect's strides per level, when the model has a Detect
    int n_strides;
    int64_t reg_max;         // box bins per side of the model's detection head (0 without one)

    // With a backend: contiguous storage; Tensor/Param views point into these. Owned, or the
    // share_weights graph's (then weights_owner is that graph).
    float *param_data, *grad_data, *buffer_data;
    void *scratch;           // activation type, scratch_elems elements
    const Graph *weights_owner;  // not owned; NULL when the graph owns its weights
    int n_allocs;
    void **allocs;           // what this graph allocated, freed at destroy
    int64_t allocated_bytes; // everything this graph allocated on its backend (not shared weights)
    int64_t largest_activation;  // elements of the largest activation tensor it allocated
    // (N, ch, H, W), filled by the caller before graph_forward; its data is allocated only when a layer
    // of the range reads the network input.
    Tensor input;
    // With GraphOptions.input_grad (and a layer of the range reading the input): dL/d input, shaped
    // like input, zeroed and accumulated by graph_backward. Otherwise its data is NULL.
    Tensor dinput;
    Shape built_input;       // the largest input the graph's memory holds
    ConvWeightQueue *weight_queue;  // owned; with split_backward only, else NULL
};

// Parses every row with its module's rules and builds all layers. The spec must outlive the graph.
bool graph_create(const ModelSpec *spec, const GraphOptions *opt, Graph **out, Error *err);
void graph_destroy(Graph *g);  // accepts NULL

// Sets the input shape for the next passes: n images of h x w, each at most what the graph was
// built for (every tensor then fits in its allocation), h and w multiples of the largest stride.
// Multi-scale training builds the graph at its largest size and shrinks it per step; validation
// runs a last, smaller batch the same way. Fails (a user error naming the limits) otherwise.
// Also shapes the external producers' out and dout for that size.
bool graph_set_input_size(Graph *g, int64_t n, int64_t h, int64_t w, Error *err);

// Layer `layer`'s output shape at the current input size, computed without running anything: any
// layer of the model (-1: the network input), e.g. a cut tensor's size before its producer has run.
Shape graph_layer_shape(const Graph *g, int layer);
// True when `layer` is in the range or is an external producer (has out and dout with a backend).
bool graph_layer_has_memory(const Graph *g, int layer);

// Runs the range's layers (train: batch statistics; otherwise running statistics).
void graph_forward(Graph *g, bool train);
// Runs layers [begin, end) only (inside the range); their inputs must already hold values.
void graph_forward_layers(Graph *g, int begin, int end, bool train);
// Runs backward from the dout of the range's last layer, which the caller has filled (for the whole
// model: the loss gradient): zeroes every other layer's output gradient (external producers'
// included), then runs the range's layers in reverse. Parameter gradients accumulate (call
// graph_zero_grads to start a new step).
void graph_backward(Graph *g);
// Zeroes the output gradient of every layer with memory, at the current shapes, and gives each dout
// its out's shape (set by this pass's forward): a stage that does not end the model then adds the
// gradients it receives into its layers' dout, over dout's shape, and runs graph_backward_layers
// over its range.
void graph_zero_activation_grads(Graph *g);
// Runs the backward of layers [begin, end) only (inside the range), last first, without zeroing
// anything: their output gradients must already hold values, and they accumulate into their
// producers' output gradients and the parameter gradients.
void graph_backward_layers(Graph *g, int begin, int end);
// Split backward (Zero Bubble's B and W; the graph was created with split_backward): the input pass
// is graph_backward_layers without the convolutions' weight (and conv bias) gradients, which each
// convolution defers, keeping the gradient at its output and its input tensor; every other
// parameter gradient (batch norm, linear) is computed here. Several input passes over parts of the
// range may follow one another; then graph_backward_weight computes every deferred gradient. B then
// W gives bitwise what graph_backward_layers gives. Until W, the layers' activations (external
// producers' out included) must keep their values: no forward or other backward runs in between.
void graph_backward_input_layers(Graph *g, int begin, int end);
void graph_backward_weight(Graph *g);
void graph_zero_grads(Graph *g);  // parameter gradients (this graph's, or the shared ones)

// The last layer (Detect or Classify): its out is the network output, its dout the loss gradient.
// Only for a graph whose range ends at the model's last layer.
Layer *graph_output(Graph *g);
// GFLOPs of one forward pass for one image at the graph's image size, as Ultralytics reports them
// (of the range).
double graph_gflops(const Graph *g);
