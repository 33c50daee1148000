// PyTorch modules written as rows: nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1,
// return_indices=False, ceil_mode=False) and nn.ZeroPad2d(padding) (an int or (left, right, top,
// bottom)). parse_model passes their arguments unchanged and keeps the input's channels. Each is one
// leaf module and thop counts no ops for either. Their outputs do not scale with the input (a pad of
// one row), so they derive it from the input's (LayerKindOps.out_shape). nn.ConvTranspose2d, below,
// does too.
#include <stdlib.h>

#include "layers/module_args.h"
#include "layers/module_net.h"

typedef struct MaxPoolConfig {
    int64_t k, stride, pad;
} MaxPoolConfig;

static bool maxpool_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    MaxPoolConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    int64_t dilation;
    bool indices, ceil_mode;
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 6,
                           "[kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False]",
                           err) ||
        !module_arg_int(layer, ctx, 0, "kernel_size", 0, 1, &cfg->k, err) ||
        !module_arg_int_or_none(layer, ctx, 1, "stride", 1, &cfg->stride, err) ||
        !module_arg_int(layer, ctx, 2, "padding", 0, 0, &cfg->pad, err) ||
        !module_arg_int(layer, ctx, 3, "dilation", 1, 1, &dilation, err) ||
        !module_arg_bool(layer, ctx, 4, "return_indices", false, &indices, err) ||
        !module_arg_bool(layer, ctx, 5, "ceil_mode", false, &ceil_mode, err))
        return false;
    if (cfg->stride < 0) cfg->stride = cfg->k;  // PyTorch: stride defaults to the kernel size
    if (cfg->pad > cfg->k / 2)
        return model_spec_error_at(ctx->spec, layer->row->args[2].node, err,
                                   "nn.MaxPool2d padding must be at most half the kernel size (%lld), found %lld",
                                   (long long)(cfg->k / 2), (long long)cfg->pad);
    if (dilation != 1)
        return model_spec_error_at(ctx->spec, layer->row->args[3].node, err, "nn.MaxPool2d dilation must be 1 here");
    if (indices)  // the indices would be a second output, which no later row can take
        return model_spec_error_at(ctx->spec, layer->row->args[4].node, err,
                                   "nn.MaxPool2d return_indices must be False in a model");
    if (ceil_mode)
        return model_spec_error_at(ctx->spec, layer->row->args[5].node, err,
                                   "nn.MaxPool2d ceil_mode=True is not supported (use False)");
    layer->c_out = ctx->c_in[0];
    module_set_args_text(layer, 0, NULL, 0);
    return true;
}

static Pool2dArgs maxpool_args(const MaxPoolConfig *cfg, Shape in) {
    return pool2d_args_out(
        &(Pool2dArgs){.n = in.n, .c = in.c, .h = in.h, .w = in.w, .k = cfg->k, .stride = cfg->stride, .pad = cfg->pad});
}

static Shape maxpool_out_shape(const Layer *layer, const Shape *in) {
    Pool2dArgs a = maxpool_args(layer->config, in[0]);
    return shape_make(a.n, a.c, a.h_out, a.w_out);
}

static bool maxpool_build(Layer *layer, Builder *b, Error *err) {
    const MaxPoolConfig *cfg = layer->config;
    Shape in = layer->in[0]->shape;
    if (in.h + 2 * cfg->pad < cfg->k || in.w + 2 * cfg->pad < cfg->k)
        return model_spec_error_at(builder_spec(b), layer->row->args[0].node, err,
                                   "nn.MaxPool2d kernel %lld does not fit its %lldx%lld input with padding %lld at image "
                                   "size %lld",
                                   (long long)cfg->k, (long long)in.h, (long long)in.w, (long long)cfg->pad,
                                   (long long)builder_imgsz_h(b));
    ModuleNet *net = module_net_begin(layer, b);
    builder_count_leaves(b, 1);
    module_net_end(net, b, net_maxpool(net, b, net_input(0), cfg->k, cfg->stride, cfg->pad));
    return true;
}

const LayerKindOps layer_kind_nn_maxpool2d = {
    .name = "nn.MaxPool2d", .parse = maxpool_parse, .build = maxpool_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
    .out_shape = maxpool_out_shape,
};

typedef struct ZeroPadConfig {
    int64_t left, right, top, bottom;
} ZeroPadConfig;

static bool zeropad_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ZeroPadConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 1, "[padding] (an int or [left, right, top, bottom])", err))
        return false;
    int64_t pads[4];
    int n = 1;
    if (layer->row->args[0].kind == ARG_KIND_LIST) {
        if (!module_arg_int_list(layer, ctx, 0, "padding", 4, 0, pads, &n, err)) return false;
        if (n != 4)
            return model_spec_error_at(ctx->spec, layer->row->args[0].node, err,
                                       "nn.ZeroPad2d padding must be an int or [left, right, top, bottom], found %d values", n);
    } else if (!module_arg_int(layer, ctx, 0, "padding", 0, 0, &pads[0], err)) {
        return false;
    }
    if (n == 1) pads[1] = pads[2] = pads[3] = pads[0];
    *cfg = (ZeroPadConfig){.left = pads[0], .right = pads[1], .top = pads[2], .bottom = pads[3]};
    layer->c_out = ctx->c_in[0];
    module_set_args_text(layer, 0, NULL, 0);
    return true;
}

static Shape zeropad_out_shape(const Layer *layer, const Shape *in) {
    const ZeroPadConfig *cfg = layer->config;
    return shape_make(in[0].n, in[0].c, in[0].h + cfg->top + cfg->bottom, in[0].w + cfg->left + cfg->right);
}

static bool zeropad_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const ZeroPadConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    builder_count_leaves(b, 1);
    module_net_end(net, b, net_zeropad(net, b, net_input(0), cfg->left, cfg->right, cfg->top, cfg->bottom));
    return true;
}

const LayerKindOps layer_kind_nn_zeropad2d = {
    .name = "nn.ZeroPad2d", .parse = zeropad_parse, .build = zeropad_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
    .out_shape = zeropad_out_shape,
};

// nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
// groups=1, bias=True, dilation=1) as parse_model builds it: c1 from the input, c2 width-scaled.
// It is the adjoint of the "mirror" convolution from its output (c2 channels) to its input (c1), whose
// weight (c1, c2, k, k) is the transpose's own: forward is the mirror's data gradient, the input
// gradient the mirror's forward, the weight gradient the mirror's filter gradient with the roles of
// input and output gradient swapped. thop counts it from the input: c1·H·W · c2·k·k per image.
typedef struct ConvTransposeConfig {
    int64_t c1, c2, k, s, p;
} ConvTransposeConfig;

static bool convtranspose_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ConvTransposeConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    int64_t output_padding, groups, dilation;
    bool bias;
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 2, 8,
                           "[c2, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True, dilation=1]",
                           err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 1, "kernel_size", 0, 1, &cfg->k, err) ||
        !module_arg_int(layer, ctx, 2, "stride", 1, 1, &cfg->s, err) ||
        !module_arg_int(layer, ctx, 3, "padding", 0, 0, &cfg->p, err) ||
        !module_arg_int(layer, ctx, 4, "output_padding", 0, 0, &output_padding, err) ||
        !module_arg_int(layer, ctx, 5, "groups", 1, 1, &groups, err) ||
        !module_arg_bool(layer, ctx, 6, "bias", true, &bias, err) ||
        !module_arg_int(layer, ctx, 7, "dilation", 1, 1, &dilation, err))
        return false;
    if (output_padding != 0)
        return model_spec_error_at(ctx->spec, layer->row->args[4].node, err, "nn.ConvTranspose2d output_padding must be 0 here");
    if (groups != 1)
        return model_spec_error_at(ctx->spec, layer->row->args[5].node, err, "nn.ConvTranspose2d groups must be 1 here");
    if (!bias)
        return model_spec_error_at(ctx->spec, layer->row->args[6].node, err, "nn.ConvTranspose2d bias must be True here");
    if (dilation != 1)
        return model_spec_error_at(ctx->spec, layer->row->args[7].node, err, "nn.ConvTranspose2d dilation must be 1 here");
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

// The mirror convolution for an input (the transpose's) of shape `in`: from (c2, H_out, W_out) to in.
static ConvDesc convtranspose_mirror(const ConvTransposeConfig *cfg, Shape in) {
    return conv_desc_make(&(ConvDesc){.n = in.n, .c_in = cfg->c2, .h_in = (in.h - 1) * cfg->s - 2 * cfg->p + cfg->k,
                                      .w_in = (in.w - 1) * cfg->s - 2 * cfg->p + cfg->k, .c_out = in.c, .kh = cfg->k,
                                      .kw = cfg->k, .stride = cfg->s, .pad = cfg->p, .dilation = 1, .groups = 1});
}

static Shape convtranspose_out_shape(const Layer *layer, const Shape *in) {
    ConvDesc m = convtranspose_mirror(layer->config, in[0]);
    return shape_make(m.n, m.c_in, m.h_in, m.w_in);
}

typedef struct ConvTransposeNode {
    const ConvTransposeConfig *cfg;
    Param weight, bias;
    void *scratch;  // the input gradient before it is added into din (conv2d_forward overwrites)
} ConvTransposeNode;

static void convtranspose_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    const ConvTransposeNode *st = node->state;
    ConvDesc m = convtranspose_mirror(st->cfg, node->in[0]->shape);
    node->out->shape = shape_make(m.n, m.c_in, m.h_in, m.w_in);
    size_t n_out = tensor_elems(node->out);
    be->ops->zero(be, node->out->data, backend_act_bytes(be, (int64_t)n_out));  // backward_data accumulates
    be->ops->conv2d_backward_data(be, &m, node->in[0]->data, st->weight.value, node->out->data);
    be->ops->channel_bias_forward(be, m.n, m.c_in, m.h_in * m.w_in, st->bias.value, node->out->data);
}

static void convtranspose_backward(NetNode *node, Backend *be) {
    const ConvTransposeNode *st = node->state;
    ConvDesc m = convtranspose_mirror(st->cfg, node->in[0]->shape);
    be->ops->conv2d_backward_filter(be, &m, node->dout->data, node->in[0]->data, st->weight.grad, NULL);
    be->ops->channel_bias_backward(be, m.n, m.c_in, m.h_in * m.w_in, node->dout->data, st->bias.grad);
    if (!node->din[0]) return;
    be->ops->conv2d_forward(be, &m, node->dout->data, st->weight.value, NULL, st->scratch);
    be->ops->accumulate(be, st->scratch, node->din[0]->data, tensor_elems(node->in[0]));
}

static const NetNodeOps convtranspose_node_ops = {.forward = convtranspose_forward, .backward = convtranspose_backward};

static bool convtranspose_build(Layer *layer, Builder *b, Error *err) {
    const ConvTransposeConfig *cfg = layer->config;
    Shape in = layer->in[0]->shape;
    ConvDesc m = convtranspose_mirror(cfg, in);
    if (m.h_in < 1 || m.w_in < 1)
        return model_spec_error_at(builder_spec(b), layer->row->args[3].node, err,
                                   "nn.ConvTranspose2d padding %lld leaves no output for its %lldx%lld input at image "
                                   "size %lld",
                                   (long long)cfg->p, (long long)in.h, (long long)in.w, (long long)builder_imgsz_h(b));
    ModuleNet *net = module_net_begin(layer, b);
    ConvTransposeNode *st = yp_calloc(1, sizeof *st);
    st->cfg = cfg;
    // PyTorch's _ConvNd.reset_parameters: kaiming_uniform_(a=√5) and the bias both give the bound
    // 1/sqrt(fan_in), fan_in = weight.size(1)·k·k, which for a transpose is c2·k·k.
    ParamInit init = {.kind = PARAM_INIT_FAN_IN_UNIFORM, .fan_in = builder_elems(b, 3, (int64_t[]){cfg->c2, cfg->k, cfg->k})};
    st->weight = builder_param(b, "weight", 4, (int64_t[]){cfg->c1, cfg->c2, cfg->k, cfg->k}, 0, init);
    st->bias = builder_param(b, "bias", 1, (int64_t[]){cfg->c2}, PARAM_NO_DECAY, init);
    st->scratch = builder_scratch(b, shape_elems(in));
    builder_conv_workspace(b, &m);
    builder_count_ops(b, (double)in.c * (double)in.h * (double)in.w * (double)init.fan_in);
    builder_count_leaves(b, 1);
    module_net_end(net, b, module_net_add(net, b, &convtranspose_node_ops, 1, (NetValue[]){net_input(0)}, NULL,
                                          shape_make(m.n, m.c_in, m.h_in, m.w_in), st));
    return true;
}

const LayerKindOps layer_kind_nn_convtranspose2d = {
    .name = "nn.ConvTranspose2d", .parse = convtranspose_parse, .build = convtranspose_build,
    .forward = module_net_layer_forward, .backward = module_net_layer_backward,
    .destroy_state = module_net_layer_destroy_state, .out_shape = convtranspose_out_shape,
};
