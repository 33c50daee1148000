// Graph: the layers of one model, their shapes, parameters and FLOPs, and (with a backend) the
// memory to run forward and backward.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/backend.h"
#include "framework/error.h"
#include "layers/builder.h"
#include "layers/layer.h"
#include "layers/model_spec.h"

typedef struct GraphOptions {
    int64_t batch;           // images per forward pass
    int64_t imgsz_h, imgsz_w;
    Backend *be;             // NULL: describe only (shapes, parameters, FLOPs), no memory
    uint64_t seed;           // parameter initialisation
} GraphOptions;

struct Graph {
    const ModelSpec *spec;   // not owned; must outlive the graph
    Backend *be;
    int n_layers;
    Layer *layers;           // owned
    int n_params;
    ParamInfo *params;       // parameters and buffers in declaration order (owned)
    int64_t param_elems;     // parameters (incl. fixed ones)
    int64_t grad_elems;      // parameters that receive gradients
    int64_t buffer_elems;    // running statistics
    int64_t activation_elems;
    int64_t scratch_elems;
    int64_t leaf_modules;
    double ops;              // ops of one image's forward pass, counted as Ultralytics does
    BatchNormSettings batchnorm;
    int64_t strides[8];      // Detect's strides per level, when the model has a Detect
    int n_strides;

    // With a backend: contiguous storage; Tensor/Param views point into these.
    float *param_data, *grad_data, *buffer_data, *scratch;
    int n_allocs;
    void **allocs;           // activation tensors, freed at destroy
    int64_t allocated_bytes; // everything the graph holds on its backend
    Tensor input;            // (N, ch, H, W), filled by the caller before graph_forward
    Shape built_input;       // the largest input the graph's memory holds
};

// Parses every row with its module's rules and builds all layers. The spec must outlive the graph.
bool graph_create(const ModelSpec *spec, const GraphOptions *opt, Graph **out, Error *err);
void graph_destroy(Graph *g);  // accepts NULL

// Sets the input shape for the next passes: n images of h x w, each at most what the graph was
// built for (every tensor then fits in its allocation), h and w multiples of the largest stride.
// Multi-scale training builds the graph at its largest size and shrinks it per step; validation
// runs a last, smaller batch the same way. Fails (a user error naming the limits) otherwise.
bool graph_set_input_size(Graph *g, int64_t n, int64_t h, int64_t w, Error *err);

// Runs all layers (train: batch statistics; otherwise running statistics).
void graph_forward(Graph *g, bool train);
// Runs layers [begin, end) only; their inputs must already hold values.
void graph_forward_layers(Graph *g, int begin, int end, bool train);
// Runs backward from graph_output(g)->dout, which the caller has filled (the loss gradient):
// zeroes every other layer's output gradient, then runs the layers in reverse. Parameter gradients
// accumulate (call graph_zero_grads to start a new step).
void graph_backward(Graph *g);
// Runs the backward of layers [begin, end) only, last first, without zeroing anything: their output
// gradients must already hold values (graph_backward's first step), and they accumulate into their
// producers' output gradients and the parameter gradients.
void graph_backward_layers(Graph *g, int begin, int end);
void graph_zero_grads(Graph *g);  // parameter gradients

// The last layer (Detect or Classify): its out is the network output, its dout the loss gradient.
Layer *graph_output(Graph *g);
// GFLOPs of one forward pass for one image at the graph's image size, as Ultralytics reports them.
double graph_gflops(const Graph *g);
