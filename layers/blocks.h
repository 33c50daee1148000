// Building blocks shared by several modules: Ultralytics' Conv (conv + batch norm + activation), a plain
// nn.Conv2d with bias, and the Bottleneck. Each block owns its activations (from the Builder) and
// is driven by the module that contains it.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "framework/core/tensor.h"
#include "layers/builder.h"

typedef struct ConvBlock ConvBlock;

// Split backward (Zero Bubble's B and W) for one graph: while `deferring`, convolutions with weight
// gradients keep the gradient at their output, remember their input and queue themselves instead of
// computing their weight gradient; conv_weight_queue_run computes the queued ones.
struct ConvWeightQueue {
    bool deferring;        // inside an input pass (graph_backward_input_layers)
    bool waiting;          // an input pass ran and its weight pass has not
    int n_pending, capacity;
    ConvBlock **pending;   // owned array of borrowed blocks, in the order the input pass reached them
};

ConvWeightQueue *conv_weight_queue_create(void);
void conv_weight_queue_destroy(ConvWeightQueue *q);  // accepts NULL
// Computes every queued weight (and conv bias) gradient and empties the queue.
void conv_weight_queue_run(ConvWeightQueue *q, Backend *be);

struct ConvBlock {
    ConvDesc desc;       // at the built (largest) size; forward re-derives it from the input
    bool batchnorm;      // Conv: bias-free convolution followed by BatchNorm2d
    ActivationSpec act;  // after the batch norm, fused into its slots; ACTIVATION_NONE: none
    BatchNormSettings bn;
    Param weight;        // (C_out, C_in / g, k, k)
    Param bias;          // (C_out) for a plain Conv2d, else empty
    Param bn_weight, bn_bias, running_mean, running_var;  // (C_out) each
    Tensor conv_out;     // (N, C_out, H, W) convolution output (batch-norm input)
    Tensor out;          // the block's output (after batch norm and SiLU); aliases conv_out without batch norm
    float *save_mean, *save_invstd;  // (C_out) batch statistics kept for backward
    void *scratch;       // one conv_out gradient, shared: used only inside conv_block_backward
    // Split backward only (the convolution has weight gradients and the graph a queue):
    ConvWeightQueue *queue;    // the graph's (not owned), else NULL
    Tensor d_conv;             // gradient at the convolution output, kept from B to W
    const void *deferred_x;    // input of the queued weight gradient; NULL when none is queued
    ConvDesc deferred_desc;    // its shapes
};

// Ultralytics' Conv(c1, c2, k, s, p, g, d, act), c1 being in.c, passed with designated
// initializers: `&(ConvBlockSpec){.in = in, .c_out = c, .k = 3, .pad = CONV_PAD_AUTO, .act = true}`.
// stride, groups and dilation left 0 mean 1 (Ultralytics' defaults); pad has no default (0 is no
// padding), so every caller says CONV_PAD_AUTO or a number.
enum { CONV_PAD_AUTO = -1 };  // pad: Ultralytics' autopad (conv_autopad); any pad < 0 means it
typedef struct ConvBlockSpec {
    Shape in;          // (N, C_in, H, W) input at the built (largest) size
    int64_t c_out;
    int64_t k;         // square kernel
    int64_t stride;    // 0: 1
    int64_t pad;       // on each side; CONV_PAD_AUTO: autopad
    int64_t groups;    // 0: 1
    int64_t dilation;  // 0: 1
    bool act;          // an activation after the batch norm (Ultralytics' act=True): the model's
                       // (ModelSpec.activation, Conv.default_act) unless act_override says another
    const ActivationSpec *act_override;  // with act: a module's own fixed activation; NULL: the model's
    // torchvision's separate nn.Conv2d and nn.BatchNorm2d modules, named e.g. "conv1" and "bn1" (NULL:
    // Ultralytics' Conv, "conv" and "bn"); their activation is a module of the block that owns
    // them, which counts its leaf.
    const char *conv_name, *bn_name;
} ConvBlockSpec;

// Declares the Conv of `spec` at the current prefix ("conv.weight", "bn.weight", ...).
void conv_block_build(ConvBlock *cb, Builder *b, const ConvBlockSpec *spec);
// Declares nn.Conv2d(c1, c2, k) with bias at the current prefix ("weight", "bias"). A `fixed`
// convolution has no bias and no gradient (DFL's projection) and is initialised to 0..C_in-1.
void conv2d_block_build(ConvBlock *cb, Builder *b, Shape in, int64_t c_out, int64_t k, bool fixed);
// Declares nn.Conv2d with bias for any kernel, stride, padding and groups of `spec` (spec->act is not
// read) at the current prefix ("weight", "bias").
void conv2d_block_build_spec(ConvBlock *cb, Builder *b, const ConvBlockSpec *spec);
// Sets the bias of a plain Conv2d to `value` (Detect's prior), at creation.
void conv2d_block_set_bias(ConvBlock *cb, Builder *b, float value);

void conv_block_forward(ConvBlock *cb, Backend *be, const Tensor *x, bool train);
// dout: gradient of cb->out; dx (may be NULL) and the parameter gradients are accumulated (the
// weight gradient is queued instead while cb->queue is deferring).
void conv_block_backward(ConvBlock *cb, Backend *be, const Tensor *x, const void *dout, void *dx);

typedef struct BottleneckBlock {
    ConvBlock cv1, cv2;
    bool add;            // residual: shortcut and c1 == c2
    Tensor out;          // x + cv2 output, or cv2's output itself
    Tensor d_hidden;     // gradient of cv1's output
} BottleneckBlock;

// Ultralytics' Bottleneck(c1, c2, shortcut, g, k=(k1, k2), e), c1 being in.c, passed with
// designated initializers; groups left 0 means 1.
typedef struct BottleneckSpec {
    Shape in;          // (N, C_in, H, W) input at the built (largest) size
    int64_t c_out;
    bool shortcut;     // residual, when also C_in == c_out
    int64_t groups;    // of cv2; 0: 1
    int64_t k1, k2;    // cv1's and cv2's kernels
    double expansion;  // cv1's channels: int(c_out * expansion), as Python rounds
} BottleneckSpec;

// Declares the Bottleneck of `spec` at the current prefix ("cv1.conv.weight", ...).
void bottleneck_block_build(BottleneckBlock *bb, Builder *b, const BottleneckSpec *spec);
void bottleneck_block_forward(BottleneckBlock *bb, Backend *be, const Tensor *x, bool train);
void bottleneck_block_backward(BottleneckBlock *bb, Backend *be, const Tensor *x, const void *dout, void *dx);

// Ultralytics' autopad: 'same' padding for odd kernels, taking dilation into account.
int64_t conv_autopad(int64_t k, int64_t dilation);

// A chain of blocks of one kind, each feeding the next (an nn.Sequential): a repeated Conv or
// Bottleneck row, and C3's bottlenecks.
typedef enum BlockKind { BLOCK_KIND_CONV, BLOCK_KIND_BOTTLENECK, BLOCK_KIND_COUNT } BlockKind;

typedef struct BlockChain {
    BlockKind kind;
    int64_t n;
    ConvBlock *convs;              // n of them when kind is BLOCK_KIND_CONV
    BottleneckBlock *bottlenecks;  // n of them when kind is BLOCK_KIND_BOTTLENECK
    Tensor *d_between;             // gradient of block j's output, j < n - 1
} BlockChain;

// Allocates n blocks; the caller builds each one, then calls block_chain_finish.
void block_chain_init(BlockChain *chain, BlockKind kind, int64_t n);
void block_chain_finish(BlockChain *chain, Builder *b);
void block_chain_destroy(BlockChain *chain);
// Copies src's parameters into dst, a chain of Convs of the same structure (a deep copy), at creation.
void block_chain_copy_params(BlockChain *dst, const BlockChain *src, Builder *b);
Tensor *block_chain_out(BlockChain *chain, int64_t j);  // output of block j; j = n - 1: the chain's
void block_chain_forward(BlockChain *chain, Backend *be, const Tensor *x, bool train);
void block_chain_backward(BlockChain *chain, Backend *be, const Tensor *x, const void *dout, void *dx);

// Layer ops for the modules whose layer->state is a BlockChain (Conv and Bottleneck rows).
typedef struct Layer Layer;
void chain_layer_forward(Layer *layer, Backend *be, bool train);
void chain_layer_backward(Layer *layer, Backend *be);
void chain_layer_destroy_state(Layer *layer);
