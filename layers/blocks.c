#include "layers/blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"
#include "layers/layer.h"

int64_t conv_autopad(int64_t k, int64_t dilation) {
    int64_t effective = dilation > 1 ? dilation * (k - 1) + 1 : k;
    return effective / 2;
}

ConvWeightQueue *conv_weight_queue_create(void) { return yp_calloc(1, sizeof(ConvWeightQueue)); }

void conv_weight_queue_destroy(ConvWeightQueue *q) {
    if (!q) return;
    free(q->pending);
    free(q);
}

// Makes room for one more block at creation, so that queueing never allocates.
static void conv_weight_queue_reserve(ConvWeightQueue *q) {
    q->pending = yp_realloc(q->pending, (size_t)(q->capacity + 1) * sizeof *q->pending);
    q->capacity++;
}

static void conv_weight_queue_push(ConvWeightQueue *q, ConvBlock *cb, const ConvDesc *d, const void *x) {
    // A second input pass over the same block before W would overwrite what W needs.
    YP_CHECK(!cb->deferred_x && q->n_pending < q->capacity);
    cb->deferred_x = x;
    cb->deferred_desc = *d;
    q->pending[q->n_pending++] = cb;
}

void conv_weight_queue_run(ConvWeightQueue *q, Backend *be) {
    for (int i = 0; i < q->n_pending; i++) {
        ConvBlock *cb = q->pending[i];
        be->ops->conv2d_backward_filter(be, &cb->deferred_desc, cb->deferred_x, cb->d_conv.data, cb->weight.grad,
                                        cb->bias.grad);
        cb->deferred_x = NULL;
    }
    q->n_pending = 0;
}

static Param declare_vector(Builder *b, const char *name, int64_t n, unsigned flags, ParamInit init) {
    return builder_param(b, name, 1, (int64_t[]){n}, flags, init);
}

// 0 for stride, groups and dilation: 1 (ConvBlockSpec); a pad < 0: autopad.
static ConvBlockSpec conv_spec_resolve(ConvBlockSpec s) {
    if (!s.stride) s.stride = 1;
    if (!s.groups) s.groups = 1;
    if (!s.dilation) s.dilation = 1;
    if (s.pad < 0) s.pad = conv_autopad(s.k, s.dilation);
    return s;
}

// Declares the convolution itself and its output; shared by both flavours. s: resolved.
static void declare_conv(ConvBlock *cb, Builder *b, const ConvBlockSpec *s, const char *weight_name, unsigned flags,
                         ParamInit init) {
    const Shape in = s->in;
    const int64_t c_out = s->c_out, k = s->k;
    cb->desc = conv_desc_make(&(ConvDesc){.n = in.n, .c_in = in.c, .h_in = in.h, .w_in = in.w, .c_out = c_out, .kh = k,
                                          .kw = k, .stride = s->stride, .pad = s->pad, .dilation = s->dilation,
                                          .groups = s->groups});
    int64_t fan_in = builder_elems(b, 3, (int64_t[]){in.c / s->groups, k, k});
    if (init.kind == PARAM_INIT_FAN_IN_UNIFORM) init.fan_in = fan_in;
    cb->weight = builder_param(b, weight_name, 4, (int64_t[]){c_out, in.c / s->groups, k, k}, flags, init);
    Shape out = shape_make(in.n, c_out, cb->desc.h_out, cb->desc.w_out);
    cb->conv_out = builder_tensor(b, out);
    cb->out = cb->conv_out;
    if (!(flags & PARAM_NO_GRAD)) cb->queue = builder_conv_weight_queue(b);
    if (cb->queue) {
        cb->d_conv = builder_tensor(b, out);
        if (builder_backend(b)) conv_weight_queue_reserve(cb->queue);
    }
    builder_conv_workspace(b, &cb->desc);
    builder_count_ops(b, (double)c_out * (double)cb->desc.h_out * (double)cb->desc.w_out * (double)fan_in);
    builder_count_leaves(b, 1);
}

void conv_block_build(ConvBlock *cb, Builder *b, const ConvBlockSpec *spec) {
    memset(cb, 0, sizeof *cb);
    const ConvBlockSpec s = conv_spec_resolve(*spec);
    const int64_t c_out = s.c_out;
    char weight[PARAM_NAME_MAX];
    snprintf(weight, sizeof weight, "%s.weight", s.conv_name ? s.conv_name : "conv");
    declare_conv(cb, b, &s, weight, 0, (ParamInit){.kind = PARAM_INIT_FAN_IN_UNIFORM});
    cb->batchnorm = true;
    cb->act = !s.act ? (ActivationSpec){.kind = ACTIVATION_NONE}
              : s.act_override ? *s.act_override
                               : builder_spec(b)->activation;
    cb->bn = builder_batchnorm_settings(b);
    builder_push(b, "%s", s.bn_name ? s.bn_name : "bn");
    cb->bn_weight = declare_vector(b, "weight", c_out, PARAM_NO_DECAY, (ParamInit){.kind = PARAM_INIT_CONST, .value = 1});
    cb->bn_bias = declare_vector(b, "bias", c_out, PARAM_NO_DECAY, (ParamInit){.kind = PARAM_INIT_CONST, .value = 0});
    cb->running_mean = declare_vector(b, "running_mean", c_out, PARAM_BUFFER, (ParamInit){.kind = PARAM_INIT_CONST});
    cb->running_var = declare_vector(b, "running_var", c_out, PARAM_BUFFER, (ParamInit){.kind = PARAM_INIT_CONST, .value = 1});
    builder_pop(b);
    cb->save_mean = builder_statistics(b, c_out);
    cb->save_invstd = builder_statistics(b, c_out);
    Shape out = cb->conv_out.shape;
    cb->out = builder_tensor(b, out);
    // Fused into the batch-norm slots: no tensor of its own. The model's default activation is one
    // module that every Conv shares (counted once); act=False gives each Conv its own nn.Identity,
    // and an override its own module. torchvision's blocks count theirs themselves.
    if (!s.conv_name) {
        if (s.act && !s.act_override) builder_count_shared_module(b, SHARED_MODULE_CONV_ACT);
        else builder_count_leaves(b, 1);
    }
    // thop counts batch norm as 2 ops per element, doubled for the affine part.
    builder_count_ops(b, 4.0 * (double)out.c * (double)out.h * (double)out.w);
    builder_count_leaves(b, 1);
    cb->scratch = builder_scratch(b, cb->out.capacity);
}

void conv2d_block_build(ConvBlock *cb, Builder *b, Shape in, int64_t c_out, int64_t k, bool fixed) {
    memset(cb, 0, sizeof *cb);
    const ConvBlockSpec s = conv_spec_resolve((ConvBlockSpec){.in = in, .c_out = c_out, .k = k, .pad = CONV_PAD_AUTO});
    if (fixed) {
        declare_conv(cb, b, &s, "weight", PARAM_NO_GRAD, (ParamInit){.kind = PARAM_INIT_ARANGE});
        return;
    }
    conv2d_block_build_spec(cb, b, &s);
}

void conv2d_block_build_spec(ConvBlock *cb, Builder *b, const ConvBlockSpec *spec) {
    memset(cb, 0, sizeof *cb);
    const ConvBlockSpec s = conv_spec_resolve(*spec);
    declare_conv(cb, b, &s, "weight", 0, (ParamInit){.kind = PARAM_INIT_FAN_IN_UNIFORM});
    cb->bias = declare_vector(b, "bias", s.c_out, PARAM_NO_DECAY,
                              (ParamInit){.kind = PARAM_INIT_FAN_IN_UNIFORM, .fan_in = s.in.c / s.groups * s.k * s.k});
}

void conv2d_block_set_bias(ConvBlock *cb, Builder *b, float value) { builder_param_fill(b, cb->bias, value); }

// Shapes the block's tensors for input x (at most the built size).
static ConvDesc conv_block_resize(ConvBlock *cb, const Tensor *x) {
    ConvDesc now = cb->desc;
    now.n = x->shape.n;
    now.c_in = x->shape.c;
    now.h_in = x->shape.h;
    now.w_in = x->shape.w;
    now = conv_desc_make(&now);
    Shape out = shape_make(now.n, now.c_out, now.h_out, now.w_out);
    YP_CHECK(x->shape.c == cb->desc.c_in && shape_elems(out) <= cb->conv_out.capacity);
    cb->conv_out.shape = cb->out.shape = out;
    return now;
}

void conv_block_forward(ConvBlock *cb, Backend *be, const Tensor *x, bool train) {
    ConvDesc d = conv_block_resize(cb, x);
    be->ops->conv2d_forward(be, &d, x->data, cb->weight.value, cb->bias.value, cb->conv_out.data);
    if (!cb->batchnorm) return;
    int64_t hw = d.h_out * d.w_out;
    if (train)
        be->ops->batchnorm_forward_train(be, &(BatchNormTrainArgs){.n = d.n, .c = d.c_out, .hw = hw,
                                                                   .x = cb->conv_out.data, .gamma = cb->bn_weight.value,
                                                                   .beta = cb->bn_bias.value,
                                                                   .running_mean = cb->running_mean.value,
                                                                   .running_var = cb->running_var.value,
                                                                   .momentum = cb->bn.momentum, .eps = cb->bn.eps,
                                                                   .act = cb->act, .y = cb->out.data,
                                                                   .save_mean = cb->save_mean,
                                                                   .save_invstd = cb->save_invstd});
    else
        be->ops->batchnorm_forward_infer(be, &(BatchNormInferArgs){.n = d.n, .c = d.c_out, .hw = hw,
                                                                   .x = cb->conv_out.data, .gamma = cb->bn_weight.value,
                                                                   .beta = cb->bn_bias.value,
                                                                   .running_mean = cb->running_mean.value,
                                                                   .running_var = cb->running_var.value,
                                                                   .eps = cb->bn.eps, .act = cb->act,
                                                                   .y = cb->out.data});
}

void conv_block_backward(ConvBlock *cb, Backend *be, const Tensor *x, const void *dout, void *dx) {
    ConvDesc d = conv_block_resize(cb, x);
    const size_t out_bytes = backend_act_bytes(be, tensor_elems(&cb->out));
    bool defer = cb->queue && cb->queue->deferring;
    const void *grad = dout;
    if (cb->batchnorm) {
        // Deferred: W reads the gradient later, so it goes to the block's own buffer, not scratch.
        void *d_conv_out = defer ? cb->d_conv.data : cb->scratch;
        be->ops->zero(be, d_conv_out, out_bytes);
        be->ops->batchnorm_backward(be, &(BatchNormBackwardArgs){.n = d.n, .c = d.c_out, .hw = d.h_out * d.w_out,
                                                                 .x = cb->conv_out.data, .dy = dout,
                                                                 .gamma = cb->bn_weight.value,
                                                                 .beta = cb->bn_bias.value, .save_mean = cb->save_mean,
                                                                 .save_invstd = cb->save_invstd,
                                                                 .act = cb->act, .dx = d_conv_out,
                                                                 .dgamma = cb->bn_weight.grad,
                                                                 .dbeta = cb->bn_bias.grad});
        grad = d_conv_out;
    } else if (defer) {
        be->ops->copy(be, cb->d_conv.data, dout, out_bytes);  // dout belongs to the caller, who may reuse it
        grad = cb->d_conv.data;
    }
    if (defer) conv_weight_queue_push(cb->queue, cb, &d, x->data);
    else if (cb->weight.grad) be->ops->conv2d_backward_filter(be, &d, x->data, grad, cb->weight.grad, cb->bias.grad);
    if (dx) be->ops->conv2d_backward_data(be, &d, grad, cb->weight.value, dx);
}

void bottleneck_block_build(BottleneckBlock *bb, Builder *b, const BottleneckSpec *spec) {
    const Shape in = spec->in;
    const int64_t c_out = spec->c_out;
    int64_t hidden = (int64_t)((double)c_out * spec->expansion);  // Python's int(c2 * e)
    builder_push(b, "cv1");
    conv_block_build(&bb->cv1, b,
                     &(ConvBlockSpec){.in = in, .c_out = hidden, .k = spec->k1, .pad = CONV_PAD_AUTO, .act = true});
    builder_pop(b);
    builder_push(b, "cv2");
    conv_block_build(&bb->cv2, b,
                     &(ConvBlockSpec){.in = bb->cv1.out.shape, .c_out = c_out, .k = spec->k2, .pad = CONV_PAD_AUTO,
                                      .groups = spec->groups, .act = true});
    builder_pop(b);
    bb->add = spec->shortcut && in.c == c_out;
    bb->out = bb->add ? builder_tensor(b, bb->cv2.out.shape) : bb->cv2.out;
    bb->d_hidden = builder_tensor(b, bb->cv1.out.shape);
}

void bottleneck_block_forward(BottleneckBlock *bb, Backend *be, const Tensor *x, bool train) {
    conv_block_forward(&bb->cv1, be, x, train);
    conv_block_forward(&bb->cv2, be, &bb->cv1.out, train);
    bb->out.shape = bb->cv2.out.shape;
    if (bb->add) be->ops->add(be, x->data, bb->cv2.out.data, bb->out.data, (size_t)tensor_elems(&bb->out));
}

void bottleneck_block_backward(BottleneckBlock *bb, Backend *be, const Tensor *x, const void *dout, void *dx) {
    bb->d_hidden.shape = bb->cv1.out.shape;
    be->ops->zero(be, bb->d_hidden.data, backend_act_bytes(be, tensor_elems(&bb->d_hidden)));
    conv_block_backward(&bb->cv2, be, &bb->cv1.out, dout, bb->d_hidden.data);
    conv_block_backward(&bb->cv1, be, x, bb->d_hidden.data, dx);
    if (bb->add && dx) be->ops->accumulate(be, dout, dx, (size_t)tensor_elems(&bb->out));
}

void block_chain_init(BlockChain *chain, BlockKind kind, int64_t n) {
    *chain = (BlockChain){.kind = kind, .n = n};
    if (kind == BLOCK_KIND_CONV) chain->convs = yp_calloc((size_t)n, sizeof *chain->convs);
    else chain->bottlenecks = yp_calloc((size_t)n, sizeof *chain->bottlenecks);
    chain->d_between = yp_calloc((size_t)n, sizeof *chain->d_between);
}

void block_chain_finish(BlockChain *chain, Builder *b) {
    for (int64_t j = 0; j + 1 < chain->n; j++) chain->d_between[j] = builder_tensor(b, block_chain_out(chain, j)->shape);
}

void block_chain_destroy(BlockChain *chain) {
    free(chain->convs);
    free(chain->bottlenecks);
    free(chain->d_between);
}

void block_chain_copy_params(BlockChain *dst, const BlockChain *src, Builder *b) {
    YP_CHECK(dst->kind == BLOCK_KIND_CONV && src->kind == BLOCK_KIND_CONV && dst->n == src->n);
    for (int64_t j = 0; j < dst->n; j++) {
        ConvBlock *d = &dst->convs[j];
        const ConvBlock *s = &src->convs[j];
        builder_param_copy(b, d->weight, s->weight);
        builder_param_copy(b, d->bias, s->bias);
        builder_param_copy(b, d->bn_weight, s->bn_weight);
        builder_param_copy(b, d->bn_bias, s->bn_bias);
    }
}

Tensor *block_chain_out(BlockChain *chain, int64_t j) {
    return chain->kind == BLOCK_KIND_CONV ? &chain->convs[j].out : &chain->bottlenecks[j].out;
}

static void chain_block_forward(BlockChain *chain, int64_t j, Backend *be, const Tensor *x, bool train) {
    if (chain->kind == BLOCK_KIND_CONV) conv_block_forward(&chain->convs[j], be, x, train);
    else bottleneck_block_forward(&chain->bottlenecks[j], be, x, train);
}

static void chain_block_backward(BlockChain *chain, int64_t j, Backend *be, const Tensor *x, const void *dout,
                                 void *dx) {
    if (chain->kind == BLOCK_KIND_CONV) conv_block_backward(&chain->convs[j], be, x, dout, dx);
    else bottleneck_block_backward(&chain->bottlenecks[j], be, x, dout, dx);
}

void block_chain_forward(BlockChain *chain, Backend *be, const Tensor *x, bool train) {
    for (int64_t j = 0; j < chain->n; j++) {
        chain_block_forward(chain, j, be, x, train);
        x = block_chain_out(chain, j);
    }
}

void block_chain_backward(BlockChain *chain, Backend *be, const Tensor *x, const void *dout, void *dx) {
    for (int64_t j = chain->n - 1; j >= 0; j--) {
        const Tensor *block_in = j ? block_chain_out(chain, j - 1) : x;
        void *block_dx = dx;
        if (j) {
            block_dx = chain->d_between[j - 1].data;
            be->ops->zero(be, block_dx, backend_act_bytes(be, tensor_elems(block_in)));
        }
        chain_block_backward(chain, j, be, block_in, dout, block_dx);
        dout = block_dx;
    }
}

void chain_layer_forward(Layer *layer, Backend *be, bool train) {
    BlockChain *chain = layer->state;
    block_chain_forward(chain, be, layer->in[0], train);
    layer->out = *block_chain_out(chain, chain->n - 1);
}

void chain_layer_backward(Layer *layer, Backend *be) {
    block_chain_backward(layer->state, be, layer->in[0], layer->dout.data, layer->din[0] ? layer->din[0]->data : NULL);
}

void chain_layer_destroy_state(Layer *layer) {
    if (!layer->state) return;
    block_chain_destroy(layer->state);
    free(layer->state);
}
