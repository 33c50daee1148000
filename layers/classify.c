// Classify: Ultralytics' Classify(c1, c2, k=1, s=1, p=None, g=1): Conv to 1280 channels, adaptive
// average pool to 1x1, dropout (p = 0: the identity), Linear to c2 logits. Output (N, c2, 1, 1).
#include <stdlib.h>

#include "layers/blocks.h"
#include "layers/module_args.h"

enum { CLASSIFY_HIDDEN = 1280 };  // efficientnet_b0's width, as Ultralytics uses

typedef struct ClassifyConfig {
    int64_t c1, c2, k, s, p, g;
} ClassifyConfig;

typedef struct ClassifyState {
    ConvBlock conv;
    Param weight, bias;       // linear (c2, 1280), (c2)
    Tensor pooled, d_pooled;  // (N, 1280, 1, 1)
    Tensor d_conv;            // gradient of conv's output
} ClassifyState;

static bool classify_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ClassifyConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 5, "[c2, k=1, s=1, p=None, g=1]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 1, "k", 1, 1, &cfg->k, err) ||
        !module_arg_int(layer, ctx, 2, "s", 1, 1, &cfg->s, err) ||
        !module_arg_int_or_none(layer, ctx, 3, "p", 0, &cfg->p, err) ||
        !module_arg_int(layer, ctx, 4, "g", 1, 1, &cfg->g, err))
        return false;
    if (cfg->c1 % cfg->g || CLASSIFY_HIDDEN % cfg->g)
        return model_spec_error_at(ctx->spec, layer->row->args[4].node, err,
                                   "groups %lld must divide the input (%lld) and hidden (%d) channels",
                                   (long long)cfg->g, (long long)cfg->c1, CLASSIFY_HIDDEN);
    layer->c_out = cfg->c2;  // class count: never width-scaled
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool classify_build(Layer *layer, Builder *b, Error *err) {
    const ClassifyConfig *cfg = layer->config;
    Shape in = layer->in[0]->shape;
    int64_t pad = cfg->p < 0 ? conv_autopad(cfg->k, 1) : cfg->p;
    if (!module_check_kernel_fits(layer, b, in, cfg->k, pad, 1, err)) return false;
    ClassifyState *st = layer->state = yp_calloc(1, sizeof *st);
    builder_push(b, "conv");
    conv_block_build(&st->conv, b,
                     &(ConvBlockSpec){.in = in, .c_out = CLASSIFY_HIDDEN, .k = cfg->k, .stride = cfg->s, .pad = cfg->p,
                                      .groups = cfg->g, .act = true});
    builder_pop(b);
    Shape conv_out = st->conv.out.shape;
    st->pooled = builder_tensor(b, shape_make(in.n, CLASSIFY_HIDDEN, 1, 1));
    st->d_pooled = builder_tensor(b, st->pooled.shape);
    st->d_conv = builder_tensor(b, conv_out);
    builder_push(b, "linear");
    ParamInit uniform = {.kind = PARAM_INIT_FAN_IN_UNIFORM, .fan_in = CLASSIFY_HIDDEN};
    st->weight = builder_param(b, "weight", 2, (int64_t[]){cfg->c2, CLASSIFY_HIDDEN}, 0, uniform);
    st->bias = builder_param(b, "bias", 1, (int64_t[]){cfg->c2}, PARAM_NO_DECAY, uniform);
    builder_pop(b);
    layer->out = builder_tensor(b, shape_make(in.n, cfg->c2, 1, 1));
    // thop: the pool adds every input and divides every output; the linear layer in * out.
    double pool_in = (double)(CLASSIFY_HIDDEN * conv_out.h * conv_out.w);
    builder_count_ops(b, pool_in + CLASSIFY_HIDDEN + (double)(CLASSIFY_HIDDEN * cfg->c2));
    builder_count_leaves(b, 3);  // pool, dropout, linear
    return true;
}

static void classify_forward(Layer *layer, Backend *be, bool train) {
    const ClassifyConfig *cfg = layer->config;
    ClassifyState *st = layer->state;
    conv_block_forward(&st->conv, be, layer->in[0], train);
    Shape s = st->conv.out.shape;
    st->pooled.shape = shape_make(s.n, CLASSIFY_HIDDEN, 1, 1);
    layer->out.shape = shape_make(s.n, cfg->c2, 1, 1);
    be->ops->avgpool_forward(be, s.n, CLASSIFY_HIDDEN, shape_hw(s), st->conv.out.data, st->pooled.data);
    be->ops->linear_forward(be, s.n, CLASSIFY_HIDDEN, cfg->c2, st->pooled.data, st->weight.value, st->bias.value,
                            layer->out.data);
}

static void classify_backward(Layer *layer, Backend *be) {
    const ClassifyConfig *cfg = layer->config;
    ClassifyState *st = layer->state;
    Shape s = st->conv.out.shape;
    be->ops->zero(be, st->d_pooled.data, backend_act_bytes(be, tensor_elems(&st->pooled)));
    be->ops->linear_backward(be, &(LinearBackwardArgs){.n = s.n, .in = CLASSIFY_HIDDEN, .out = cfg->c2,
                                                       .x = st->pooled.data, .w = st->weight.value,
                                                       .dy = layer->dout.data, .dx = st->d_pooled.data,
                                                       .dw = st->weight.grad, .db = st->bias.grad});
    be->ops->zero(be, st->d_conv.data, backend_act_bytes(be, shape_elems(s)));
    be->ops->avgpool_backward(be, s.n, CLASSIFY_HIDDEN, shape_hw(s), st->d_pooled.data, st->d_conv.data);
    conv_block_backward(&st->conv, be, layer->in[0], st->d_conv.data, layer->din[0] ? layer->din[0]->data : NULL);
}

static void classify_destroy_state(Layer *layer) { free(layer->state); }

const LayerKindOps layer_kind_classify = {
    .name = "Classify", .parse = classify_parse, .build = classify_build, .forward = classify_forward,
    .backward = classify_backward, .destroy_state = classify_destroy_state,
};
