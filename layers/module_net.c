#include "layers/module_net.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"

struct ModuleNet {
    Layer *layer;
    int n_nodes;
    NetNode **nodes;  // each allocated on its own, so that the pointers wired between them stay valid
    NetValue output;
};

ModuleNet *module_net_begin(Layer *layer, Builder *b) {
    (void)b;
    ModuleNet *net = yp_calloc(1, sizeof *net);
    net->layer = layer;
    net->output = -1;
    layer->state = net;
    return net;
}

NetNode *module_net_node(ModuleNet *net, NetValue v) {
    YP_CHECK(0 <= v && v < net->n_nodes);
    return net->nodes[v];
}

static const Tensor *net_value_tensor(const ModuleNet *net, NetValue v) {
    if (v >= 0) {
        YP_CHECK(v < net->n_nodes);
        return net->nodes[v]->out;
    }
    int k = -1 - v;
    YP_CHECK(k < net->layer->n_in);
    return net->layer->in[k];
}

// The gradient of v: a node's dout, or the layer input's (NULL when that input wants none).
static Tensor *net_value_grad(ModuleNet *net, NetValue v) {
    if (v >= 0) return module_net_node(net, v)->dout;
    return net->layer->din[-1 - v];
}

Shape module_net_shape(const ModuleNet *net, NetValue v) { return net_value_tensor(net, v)->shape; }

NetValue module_net_add(ModuleNet *net, Builder *b, const NetNodeOps *ops, int n_in, const NetValue *in,
                        const Tensor *out, Shape out_shape, void *state) {
    YP_CHECK(n_in <= NET_MAX_IN);
    NetNode *node = yp_calloc(1, sizeof *node);
    node->ops = ops;
    node->n_in = n_in;
    node->state = state;
    for (int k = 0; k < n_in; k++) {
        node->in_value[k] = in[k];
        node->in[k] = net_value_tensor(net, in[k]);
    }
    if (out) {
        node->out = (Tensor *)out;
    } else {
        node->own_out = builder_tensor(b, out_shape);
        node->out = &node->own_out;
    }
    node->dout = &node->own_dout;
    net->nodes = yp_realloc(net->nodes, (size_t)(net->n_nodes + 1) * sizeof *net->nodes);
    net->nodes[net->n_nodes] = node;
    return net->n_nodes++;
}

void module_net_end(ModuleNet *net, Builder *b, NetValue v) {
    NetNode *output = module_net_node(net, v);
    net->output = v;
    net->layer->out = *output->out;
    output->dout = &net->layer->dout;  // the graph allocates it after build
    for (int i = 0; i < net->n_nodes; i++) {
        NetNode *node = net->nodes[i];
        if (i != v) node->own_dout = builder_tensor(b, node->out->shape);
        for (int k = 0; k < node->n_in; k++) node->din[k] = net_value_grad(net, node->in_value[k]);
    }
}

void module_net_layer_forward(Layer *layer, Backend *be, bool train) {
    ModuleNet *net = layer->state;
    for (int i = 0; i < net->n_nodes; i++) net->nodes[i]->ops->forward(net->nodes[i], be, train);
    layer->out.shape = net->nodes[net->output]->out->shape;
}

void module_net_layer_backward(Layer *layer, Backend *be) {
    ModuleNet *net = layer->state;
    // Every node's gradient starts at zero; the output's is the layer's dout, which the graph filled.
    for (int i = 0; i < net->n_nodes; i++) {
        NetNode *node = net->nodes[i];
        if (i == net->output) continue;
        node->own_dout.shape = node->out->shape;
        be->ops->zero(be, node->own_dout.data, backend_act_bytes(be, tensor_elems(node->out)));
    }
    for (int i = net->n_nodes - 1; i >= 0; i--) net->nodes[i]->ops->backward(net->nodes[i], be);
}

void module_net_layer_destroy_state(Layer *layer) {
    ModuleNet *net = layer->state;
    if (!net) return;
    for (int i = 0; i < net->n_nodes; i++) {
        NetNode *node = net->nodes[i];
        if (node->ops->destroy) node->ops->destroy(node);
        free(node->state);
        free(node);
    }
    free(net->nodes);
    free(net);
}

static void *din_data(const NetNode *node, int k) { return node->din[k] ? node->din[k]->data : NULL; }

// ---- Conv and nn.Conv2d: a ConvBlock ---------------------------------------------------------------

static void conv_node_forward(NetNode *node, Backend *be, bool train) {
    ConvBlock *cb = node->state;
    conv_block_forward(cb, be, node->in[0], train);
}

static void conv_node_backward(NetNode *node, Backend *be) {
    ConvBlock *cb = node->state;
    conv_block_backward(cb, be, node->in[0], node->dout->data, din_data(node, 0));
}

static const NetNodeOps conv_node_ops = {.forward = conv_node_forward, .backward = conv_node_backward};

static ConvBlock *net_conv_declare(Builder *b, const char *name, Shape in, ConvBlockSpec spec, bool plain) {
    ConvBlock *cb = yp_calloc(1, sizeof *cb);
    spec.in = in;
    if (name) builder_push(b, "%s", name);
    if (plain) conv2d_block_build_spec(cb, b, &spec);
    else conv_block_build(cb, b, &spec);
    if (name) builder_pop(b);
    return cb;
}

ConvBlock *net_conv_ahead(ModuleNet *net, Builder *b, const char *name, Shape in, ConvBlockSpec spec) {
    (void)net;
    return net_conv_declare(b, name, in, spec, false);
}

NetValue net_conv_node(ModuleNet *net, Builder *b, ConvBlock *cb, NetValue x) {
    Shape in = module_net_shape(net, x);
    YP_CHECK(in.c == cb->desc.c_in && in.h == cb->desc.h_in && in.w == cb->desc.w_in);
    return module_net_add(net, b, &conv_node_ops, 1, &x, &cb->out, cb->out.shape, cb);
}

NetValue net_conv(ModuleNet *net, Builder *b, const char *name, NetValue x, ConvBlockSpec spec) {
    return net_conv_node(net, b, net_conv_declare(b, name, module_net_shape(net, x), spec, false), x);
}

NetValue net_conv2d(ModuleNet *net, Builder *b, const char *name, NetValue x, ConvBlockSpec spec) {
    return net_conv_node(net, b, net_conv_declare(b, name, module_net_shape(net, x), spec, true), x);
}

// ---- channel slices and concatenation ----------------------------------------------------------------

typedef struct ChannelsState {
    int64_t c0, count;
} ChannelsState;

static void channels_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    const ChannelsState *st = node->state;
    Shape s = node->in[0]->shape;
    node->out->shape = shape_make(s.n, st->count, s.h, s.w);
    backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = shape_hw(s), .src = node->in[0]->data, .src_c = s.c,
                                                  .src_c0 = st->c0, .dst = node->out->data, .dst_c = st->count,
                                                  .count = st->count});
}

static void channels_backward(NetNode *node, Backend *be) {
    const ChannelsState *st = node->state;
    Shape s = node->in[0]->shape;
    if (!node->din[0]) return;
    backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = shape_hw(s), .src = node->dout->data,
                                                  .src_c = st->count, .dst = node->din[0]->data, .dst_c = s.c,
                                                  .dst_c0 = st->c0, .count = st->count, .accumulate = true});
}

static const NetNodeOps channels_ops = {.forward = channels_forward, .backward = channels_backward};

NetValue net_channels(ModuleNet *net, Builder *b, NetValue x, int64_t c0, int64_t count) {
    Shape s = module_net_shape(net, x);
    YP_CHECK(0 <= c0 && 0 < count && c0 + count <= s.c);
    ChannelsState *st = yp_calloc(1, sizeof *st);
    *st = (ChannelsState){.c0 = c0, .count = count};
    return module_net_add(net, b, &channels_ops, 1, &x, NULL, shape_make(s.n, count, s.h, s.w), st);
}

static void concat_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    Shape s = node->in[0]->shape;
    int64_t total = 0;
    for (int k = 0; k < node->n_in; k++) total += node->in[k]->shape.c;
    node->out->shape = shape_make(s.n, total, s.h, s.w);
    int64_t c0 = 0;
    for (int k = 0; k < node->n_in; k++) {
        int64_t c = node->in[k]->shape.c;
        backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = shape_hw(s), .src = node->in[k]->data,
                                                      .src_c = c, .dst = node->out->data, .dst_c = total,
                                                      .dst_c0 = c0, .count = c});
        c0 += c;
    }
}

static void concat_backward(NetNode *node, Backend *be) {
    Shape s = node->out->shape;
    int64_t c0 = 0;
    for (int k = 0; k < node->n_in; k++) {
        int64_t c = node->in[k]->shape.c;
        if (node->din[k])
            backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = shape_hw(s), .src = node->dout->data,
                                                          .src_c = s.c, .src_c0 = c0, .dst = node->din[k]->data,
                                                          .dst_c = c, .count = c, .accumulate = true});
        c0 += c;
    }
}

static const NetNodeOps concat_ops = {.forward = concat_forward, .backward = concat_backward};

NetValue net_concat(ModuleNet *net, Builder *b, int n, const NetValue *xs) {
    Shape s = module_net_shape(net, xs[0]);
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        Shape sk = module_net_shape(net, xs[k]);
        YP_CHECK(sk.n == s.n && sk.h == s.h && sk.w == s.w);
        total += sk.c;
    }
    return module_net_add(net, b, &concat_ops, n, xs, NULL, shape_make(s.n, total, s.h, s.w), NULL);
}

// ---- sums ---------------------------------------------------------------------------------------------

static void sum_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    node->out->shape = node->in[0]->shape;
    size_t n = (size_t)tensor_elems(node->out);
    be->ops->add(be, node->in[0]->data, node->in[1]->data, node->out->data, n);
    for (int k = 2; k < node->n_in; k++) be->ops->accumulate(be, node->in[k]->data, node->out->data, n);
}

static void sum_backward(NetNode *node, Backend *be) {
    size_t n = (size_t)tensor_elems(node->out);
    for (int k = 0; k < node->n_in; k++)
        if (node->din[k]) be->ops->accumulate(be, node->dout->data, node->din[k]->data, n);
}

static const NetNodeOps sum_ops = {.forward = sum_forward, .backward = sum_backward};

NetValue net_sum(ModuleNet *net, Builder *b, int n, const NetValue *xs) {
    YP_CHECK(n >= 2);
    Shape s = module_net_shape(net, xs[0]);
    for (int k = 1; k < n; k++) YP_CHECK(shape_elems(module_net_shape(net, xs[k])) == shape_elems(s));
    return module_net_add(net, b, &sum_ops, n, xs, NULL, s, NULL);
}

// ---- nearest upsampling --------------------------------------------------------------------------------

typedef struct UpsampleState {
    int64_t factor;
} UpsampleState;

static void upsample_node_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    const UpsampleState *st = node->state;
    Shape s = node->in[0]->shape;
    node->out->shape = shape_make(s.n, s.c, s.h * st->factor, s.w * st->factor);
    be->ops->upsample_nearest_forward(be, s.n, s.c, s.h, s.w, st->factor, node->in[0]->data, node->out->data);
}

static void upsample_node_backward(NetNode *node, Backend *be) {
    const UpsampleState *st = node->state;
    Shape s = node->in[0]->shape;
    if (node->din[0])
        be->ops->upsample_nearest_backward(be, s.n, s.c, s.h, s.w, st->factor, node->dout->data, node->din[0]->data);
}

static const NetNodeOps upsample_ops = {.forward = upsample_node_forward, .backward = upsample_node_backward};

NetValue net_upsample(ModuleNet *net, Builder *b, NetValue x, int64_t factor) {
    YP_CHECK(factor >= 1);
    Shape s = module_net_shape(net, x);
    UpsampleState *st = yp_calloc(1, sizeof *st);
    st->factor = factor;
    return module_net_add(net, b, &upsample_ops, 1, &x, NULL, shape_make(s.n, s.c, s.h * factor, s.w * factor), st);
}

// ---- pools, padding, activations ---------------------------------------------------------------------

typedef struct PoolState {
    bool max;  // max-pool, else average pool
    int64_t k, stride, pad;
} PoolState;

static Pool2dArgs pool_args(const PoolState *st, Shape in) {
    return pool2d_args_out(&(Pool2dArgs){.n = in.n, .c = in.c, .h = in.h, .w = in.w, .k = st->k, .stride = st->stride,
                                         .pad = st->pad});
}

static void pool_node_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    const PoolState *st = node->state;
    Pool2dArgs a = pool_args(st, node->in[0]->shape);
    node->out->shape = shape_make(a.n, a.c, a.h_out, a.w_out);
    a.x = node->in[0]->data;
    a.y = node->out->data;
    if (st->max) be->ops->maxpool2d_forward(be, &a);
    else be->ops->avgpool2d_forward(be, &a);
}

static void pool_node_backward(NetNode *node, Backend *be) {
    const PoolState *st = node->state;
    if (!node->din[0]) return;
    Pool2dArgs a = pool_args(st, node->in[0]->shape);
    a.x = node->in[0]->data;
    a.dy = node->dout->data;
    a.dx = node->din[0]->data;
    if (st->max) be->ops->maxpool2d_backward(be, &a);
    else be->ops->avgpool2d_backward(be, &a);
}

static const NetNodeOps pool_ops = {.forward = pool_node_forward, .backward = pool_node_backward};

static NetValue net_pool(ModuleNet *net, Builder *b, NetValue x, bool max, int64_t k, int64_t stride, int64_t pad) {
    PoolState *st = yp_calloc(1, sizeof *st);
    *st = (PoolState){.max = max, .k = k, .stride = stride, .pad = pad};
    Pool2dArgs a = pool_args(st, module_net_shape(net, x));
    return module_net_add(net, b, &pool_ops, 1, &x, NULL, shape_make(a.n, a.c, a.h_out, a.w_out), st);
}

NetValue net_maxpool(ModuleNet *net, Builder *b, NetValue x, int64_t k, int64_t stride, int64_t pad) {
    return net_pool(net, b, x, true, k, stride, pad);
}

NetValue net_avgpool(ModuleNet *net, Builder *b, NetValue x, int64_t k, int64_t stride, int64_t pad) {
    return net_pool(net, b, x, false, k, stride, pad);
}

typedef struct PadState {
    int64_t left, right, top, bottom;
} PadState;

static Pad2dArgs pad_args(const PadState *st, Shape in) {
    return (Pad2dArgs){.n = in.n, .c = in.c, .h = in.h, .w = in.w, .left = st->left, .right = st->right,
                       .top = st->top, .bottom = st->bottom};
}

static void pad_node_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    const PadState *st = node->state;
    Shape s = node->in[0]->shape;
    node->out->shape = shape_make(s.n, s.c, s.h + st->top + st->bottom, s.w + st->left + st->right);
    Pad2dArgs a = pad_args(st, s);
    a.x = node->in[0]->data;
    a.y = node->out->data;
    be->ops->pad2d_forward(be, &a);
}

static void pad_node_backward(NetNode *node, Backend *be) {
    if (!node->din[0]) return;
    Pad2dArgs a = pad_args(node->state, node->in[0]->shape);
    a.dy = node->dout->data;
    a.dx = node->din[0]->data;
    be->ops->pad2d_backward(be, &a);
}

static const NetNodeOps pad_ops = {.forward = pad_node_forward, .backward = pad_node_backward};

NetValue net_zeropad(ModuleNet *net, Builder *b, NetValue x, int64_t left, int64_t right, int64_t top, int64_t bottom) {
    YP_CHECK(left >= 0 && right >= 0 && top >= 0 && bottom >= 0);
    PadState *st = yp_calloc(1, sizeof *st);
    *st = (PadState){.left = left, .right = right, .top = top, .bottom = bottom};
    Shape s = module_net_shape(net, x);
    return module_net_add(net, b, &pad_ops, 1, &x, NULL, shape_make(s.n, s.c, s.h + top + bottom, s.w + left + right), st);
}

static void activation_node_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    const ActivationSpec *act = node->state;
    node->out->shape = node->in[0]->shape;
    be->ops->activation_forward(be, *act, node->in[0]->data, node->out->data, (size_t)tensor_elems(node->out));
}

static void activation_node_backward(NetNode *node, Backend *be) {
    const ActivationSpec *act = node->state;
    if (node->din[0])
        be->ops->activation_backward(be, *act, node->in[0]->data, node->dout->data, node->din[0]->data,
                                     (size_t)tensor_elems(node->out));
}

static const NetNodeOps activation_ops = {.forward = activation_node_forward, .backward = activation_node_backward};

NetValue net_activation(ModuleNet *net, Builder *b, NetValue x, ActivationSpec act) {
    ActivationSpec *st = yp_calloc(1, sizeof *st);
    *st = act;
    return module_net_add(net, b, &activation_ops, 1, &x, NULL, module_net_shape(net, x), st);
}

// ---- composites -------------------------------------------------------------------------------------

NetValue net_bottleneck(ModuleNet *net, Builder *b, const char *name, NetValue x, BottleneckSpec spec) {
    Shape in = module_net_shape(net, x);
    int64_t hidden = (int64_t)((double)spec.c_out * spec.expansion);  // Python's int(c2 * e)
    if (name) builder_push(b, "%s", name);
    NetValue h = net_conv(net, b, "cv1", x, (ConvBlockSpec){.c_out = hidden, .k = spec.k1, .pad = CONV_PAD_AUTO, .act = true});
    NetValue y = net_conv(net, b, "cv2", h,
                          (ConvBlockSpec){.c_out = spec.c_out, .k = spec.k2, .pad = CONV_PAD_AUTO, .groups = spec.groups,
                                          .act = true});
    if (name) builder_pop(b);
    return spec.shortcut && in.c == spec.c_out ? net_add(net, b, x, y) : y;
}
