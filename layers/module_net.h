// ModuleNet: a module's forward written as the few operations Ultralytics' forward makes (Conv,
// channel slices, concatenation, sums, pools, attention, ...), each a node that owns its output and
// its output gradient. Backward is derived: the nodes run in reverse and each adds its share into
// its inputs' gradients, so a module built on it writes no backward of its own.
//
// A module kind uses it in build, declaring nodes in Ultralytics' declaration order (that order is
// the state dict's), and takes module_net_layer_forward / _backward / _destroy_state as its ops:
//
//     ModuleNet *net = module_net_begin(layer, b);
//     NetValue y = net_conv(net, b, "cv1", net_input(0), (ConvBlockSpec){.c_out = c, .k = 1,
//                                                                   .pad = CONV_PAD_AUTO, .act = true});
//     ...
//     module_net_end(net, b, y);
//
// The same code runs in the describing pass and in the pass with memory (layers/builder.h). Shapes
// are those of the built (largest) input; forward re-derives every node's shape from its inputs', so
// multi-scale steps and smaller last batches work as they do for every layer.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "framework/core/tensor.h"
#include "layers/blocks.h"
#include "layers/builder.h"
#include "layers/layer.h"

enum { NET_MAX_IN = 16 };

// A value of the net: a node's output (>= 0), or one of the layer's inputs (net_input).
typedef int NetValue;
static inline NetValue net_input(int k) { return -1 - k; }

typedef struct ModuleNet ModuleNet;
typedef struct NetNode NetNode;

// A node kind. forward reads in[], sets out->shape from its inputs' current shapes and writes out;
// backward reads *dout (out's shape) and ACCUMULATES into each din[k] that is not NULL (an input of
// the layer that needs no gradient) and into its parameter gradients.
typedef struct NetNodeOps {
    void (*forward)(NetNode *node, Backend *be, bool train);
    void (*backward)(NetNode *node, Backend *be);
    void (*destroy)(NetNode *node);  // frees what state owns besides itself; NULL: nothing
} NetNodeOps;

struct NetNode {
    const NetNodeOps *ops;
    int n_in;
    NetValue in_value[NET_MAX_IN];
    const Tensor *in[NET_MAX_IN];
    Tensor *din[NET_MAX_IN];  // wired by module_net_end
    Tensor *out;              // own_out, or a tensor of the node's state (a Conv's output)
    Tensor *dout;             // own_dout, or the layer's dout when the node is the net's output
    Tensor own_out, own_dout;
    void *state;              // kind-specific, owned (freed after destroy)
};

// Starts the net of the layer being built and makes it layer->state.
ModuleNet *module_net_begin(Layer *layer, Builder *b);
// Makes v the layer's output; the last call of build. v must be a node's output.
void module_net_end(ModuleNet *net, Builder *b, NetValue v);
// v's shape at the built size.
Shape module_net_shape(const ModuleNet *net, NetValue v);

// Adds a node of kind `ops` reading in[0..n_in). Its output is `out` when given (a tensor the
// node's state owns, declared before this call), else a new tensor of out_shape; `state` (may be
// NULL) becomes the node's, freed with it.
NetValue module_net_add(ModuleNet *net, Builder *b, const NetNodeOps *ops, int n_in, const NetValue *in,
                        const Tensor *out, Shape out_shape, void *state);
NetNode *module_net_node(ModuleNet *net, NetValue v);

// ---- the nodes most modules are made of ----------------------------------------------------------
// `name` (may be NULL: the current prefix) is pushed onto the naming prefix for the node's
// parameters, e.g. "cv1" gives "model.<i>.cv1.conv.weight".

// Ultralytics' Conv (spec.in is taken from x).
NetValue net_conv(ModuleNet *net, Builder *b, const char *name, NetValue x, ConvBlockSpec spec);
// nn.Conv2d with bias (spec.act is not read): "weight", "bias".
NetValue net_conv2d(ModuleNet *net, Builder *b, const char *name, NetValue x, ConvBlockSpec spec);
// A Conv declared before the node that feeds it exists, for modules that declare it first (C2f's
// cv2 comes before m in Ultralytics' state dict): net_conv_ahead declares its parameters now for an
// input of shape `in`; net_conv_node later adds the node applying it to x (of that shape), which
// takes the block over. Every block declared ahead must be given to net_conv_node.
ConvBlock *net_conv_ahead(ModuleNet *net, Builder *b, const char *name, Shape in, ConvBlockSpec spec);
NetValue net_conv_node(ModuleNet *net, Builder *b, ConvBlock *cb, NetValue x);
// Channels [c0, c0 + count) of x (torch's chunk and split).
NetValue net_channels(ModuleNet *net, Builder *b, NetValue x, int64_t c0, int64_t count);
// torch.cat(xs, 1): every value has x's size.
NetValue net_concat(ModuleNet *net, Builder *b, int n, const NetValue *xs);
// The element-wise sum of n values of one shape.
NetValue net_sum(ModuleNet *net, Builder *b, int n, const NetValue *xs);
static inline NetValue net_add(ModuleNet *net, Builder *b, NetValue x, NetValue y) {
    return net_sum(net, b, 2, (NetValue[]){x, y});
}
// Nearest-neighbour upsampling by an integer factor.
NetValue net_upsample(ModuleNet *net, Builder *b, NetValue x, int64_t factor);

// nn.MaxPool2d(k, stride, pad) / F.max_pool2d, and F.avg_pool2d(x, k, stride, pad) (count_include_pad,
// no ceil mode): the module counts as no leaf and no ops here, as thop does for the functional forms;
// a module that holds an nn.MaxPool2d counts its leaf itself (builder_count_leaves).
NetValue net_maxpool(ModuleNet *net, Builder *b, NetValue x, int64_t k, int64_t stride, int64_t pad);
NetValue net_avgpool(ModuleNet *net, Builder *b, NetValue x, int64_t k, int64_t stride, int64_t pad);
// nn.ZeroPad2d((left, right, top, bottom)).
NetValue net_zeropad(ModuleNet *net, Builder *b, NetValue x, int64_t left, int64_t right, int64_t top, int64_t bottom);
// An activation on its own (after a sum, as in RepConvN and ResNetBlock); counts no leaf or ops.
NetValue net_activation(ModuleNet *net, Builder *b, NetValue x, ActivationSpec act);

// Ultralytics' Bottleneck(c1, c2, shortcut, g, k, e) at `name` (cv1, cv2, and x + cv2 when the
// shortcut applies): spec.in is taken from x.
NetValue net_bottleneck(ModuleNet *net, Builder *b, const char *name, NetValue x, BottleneckSpec spec);

// ---- the layer ops of a module built on a net -----------------------------------------------------
void module_net_layer_forward(Layer *layer, Backend *be, bool train);
void module_net_layer_backward(Layer *layer, Backend *be);
void module_net_layer_destroy_state(Layer *layer);
