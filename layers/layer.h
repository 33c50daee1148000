// Layers: one per row of the model YAML, each an instance of a module kind (Conv, C2f, Detect, ...).
//
// A module kind is a small ops table registered in layer_kinds[] (layers/registry.c):
//   parse    checks the row's arguments against the module's constructor and resolves them with
//            Ultralytics' channel rules into the layer's private config (layer->config);
//   build    declares the layer's parameters, buffers and activations through a Builder and sets
//            its output shape and FLOPs; the same code runs with and without a backend;
//   forward  reads layer->in[], writes layer->out;
//   backward reads layer->dout and ACCUMULATES into layer->din[] (entries may be NULL: no gradient
//            is wanted for that input) and into the parameter gradients.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "framework/core/error.h"
#include "framework/core/tensor.h"
#include "layers/model_spec.h"

typedef struct Builder Builder;
typedef struct Layer Layer;

typedef enum LayerKind {
    LAYER_KIND_CONV,
    LAYER_KIND_BOTTLENECK,
    LAYER_KIND_C2F,
    LAYER_KIND_C3,
    LAYER_KIND_SPPF,
    LAYER_KIND_UPSAMPLE,
    LAYER_KIND_CONCAT,
    LAYER_KIND_DETECT,
    LAYER_KIND_V10DETECT,
    LAYER_KIND_CLASSIFY,
    LAYER_KIND_C3K2,
    LAYER_KIND_TORCHVISION,
    LAYER_KIND_REPNCSPELAN4,
    LAYER_KIND_ELAN1,
    LAYER_KIND_ADOWN,
    LAYER_KIND_ACONV,
    LAYER_KIND_SPPELAN,
    LAYER_KIND_CBLINEAR,
    LAYER_KIND_CBFUSE,
    LAYER_KIND_IDENTITY,
    LAYER_KIND_NN_MAXPOOL2D,
    LAYER_KIND_NN_ZEROPAD2D,
    LAYER_KIND_SPP,
    LAYER_KIND_C2,
    LAYER_KIND_GHOSTCONV,
    LAYER_KIND_DWCONV,
    LAYER_KIND_GHOST_BOTTLENECK,
    LAYER_KIND_C3GHOST,
    LAYER_KIND_SCDOWN,
    LAYER_KIND_C2FCIB,
    LAYER_KIND_RESNET_LAYER,
    LAYER_KIND_C2PSA,
    LAYER_KIND_A2C2F,
    LAYER_KIND_PSA,
    LAYER_KIND_NN_CONVTRANSPOSE2D,
    LAYER_KIND_COUNT
} LayerKind;

// What parse may look at besides the row.
typedef struct ParseContext {
    const ModelSpec *spec;
    const int64_t *c_in;  // output channels of each input named in `from`, in order
    const Layer *layers;  // the graph's layers, parsed up to this one (CBFuse reads its CBLinears')
} ParseContext;

typedef struct LayerKindOps {
    const char *name;  // as written in the YAML
    // Fills layer->config (allocated here, freed by free) and layer->c_out.
    bool (*parse)(Layer *layer, const ParseContext *ctx, Error *err);
    // Called with layer->in[] shapes set. Fails only on shapes the module cannot take.
    bool (*build)(Layer *layer, Builder *b, Error *err);
    void (*forward)(Layer *layer, Backend *be, bool train);
    void (*backward)(Layer *layer, Backend *be);
    // Frees what build allocated in layer->state (not the tensors: the Builder owns those).
    void (*destroy_state)(Layer *layer);
    // A detection head (Detect, v10Detect): output (N, 4 * reg_max + nc, anchors, 1), anchors = the
    // cells of every input level; it sets the graph's strides and reg_max.
    bool detect_head;
    // The output shape from the inputs' current shapes, for kinds whose output is not the built one
    // scaled like the input (nn.ZeroPad2d, nn.MaxPool2d: at 640 a pad of 1 and a 2x2 pool of stride 1
    // keep 20x20, at 320 10x10, not the scaled 10.5); NULL: scaled.
    Shape (*out_shape)(const Layer *layer, const Shape *in);
} LayerKindOps;

extern const LayerKindOps *const layer_kinds[LAYER_KIND_COUNT];

// The kind whose name is `module`, or LAYER_KIND_COUNT.
LayerKind layer_kind_find(const char *module);

struct Layer {
    int index;
    LayerKind kind;
    const ModelRow *row;  // the row it came from (owned by the ModelSpec)
    int n_in;
    int in_index[MODEL_MAX_FROM];   // producer layer of each input; -1 = the network input
    int64_t c_out;                  // output channels, known after parse
    void *config;                   // kind-specific resolved constructor arguments (owned)
    char args_text[128];            // resolved arguments for display, e.g. "[3, 16, 3, 2]"

    // Set by build.
    Shape out_shape;                // per the batch size the graph was built for
    int64_t n_params, n_grads;      // parameter elements, and those that receive gradients
    double ops;                     // multiply-adds and other ops as Ultralytics' counter counts them
    double uncounted_ops;           // work thop misses (attention's products and softmax), for the cost model
    int64_t leaf_modules;           // PyTorch leaf modules, as Ultralytics' summary counts layers
    int64_t activation_elems;       // activations and buffers allocated for forward/backward
    void *state;                    // kind-specific runtime state (owned)

    // Wired by the graph: inputs are producers' outputs (or the network input); din[k] is the
    // producer's output gradient, or NULL.
    const Tensor *in[MODEL_MAX_FROM];
    Tensor *din[MODEL_MAX_FROM];
    Tensor out, dout;
};
