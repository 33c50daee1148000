// PyTorch modules written as rows: nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1,
// return_indices=False, ceil_mode=False) and nn.ZeroPad2d(padding) (an int or (left, right, top,
// bottom)). parse_model passes their arguments unchanged and keeps the input's channels. Each is one
// leaf module and thop counts no ops for either. Their outputs do not scale with the input (a pad of
// one row), so they derive it from the input's (LayerKindOps.out_shape).
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
