// A2C2f: Ultralytics' A2C2f(c1, c2, n=1, a2=True, area=1, residual=False, mlp_ratio=2.0, e=0.5, g=1,
// shortcut=True), YOLO12's area-attention CSP block: a 1x1 Conv to c_ = int(c2 · e) (a multiple of
// 32), n blocks chained on it, each Sequential(ABlock, ABlock) when a2 (ABlock(c_, c_ // 32, mlp_ratio,
// area): x + AAttn(x), then + mlp(x)) or C3k(c_, c_, 2, shortcut, g), everything concatenated, a 1x1
// Conv to c2; with a2 and residual the output is x + gamma · y, gamma (c2) a layer scale initialised
// to 0.01. parse_model appends (True, 1.2), residual and mlp_ratio, at scales l and x.
#include <stdlib.h>
#include <string.h>

#include "layers/attention.h"
#include "layers/c3k2.h"
#include "layers/module_args.h"

typedef struct A2c2fConfig {
    int64_t c1, c2, n, area, g, c;
    bool a2, residual, shortcut;
    double mlp_ratio, e;
} A2c2fConfig;

static bool a2c2f_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    A2c2fConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    const ModelRow *row = layer->row;
    cfg->c1 = ctx->c_in[0];
    cfg->n = row->repeats;
    const char *scale = ctx->spec->scale;
    bool appended = !strcmp(scale, "l") || !strcmp(scale, "x");
    // The appended pair binds to residual and mlp_ratio only after exactly [c2, a2, area].
    if (appended && row->n_args != 3)
        return model_spec_error_at(ctx->spec, row->args_node, err,
                                   "A2C2f at scale %s takes exactly [c2, a2, area]: parse_model appends "
                                   "(residual=True, mlp_ratio=1.2) after the row's arguments",
                                   scale);
    if (!module_require_inputs(layer, ctx, 1, err) ||
        !module_args_count(layer, ctx, 1, 8,
                           "[c2, a2=True, area=1, residual=False, mlp_ratio=2.0, e=0.5, g=1, shortcut=True]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_bool(layer, ctx, 1, "a2", true, &cfg->a2, err) ||
        !module_arg_int(layer, ctx, 2, "area", 1, -MODULE_ARG_INT_MAX, &cfg->area, err) ||
        !module_arg_bool(layer, ctx, 3, "residual", appended, &cfg->residual, err) ||
        !module_arg_number(layer, ctx, 4, "mlp_ratio", appended ? 1.2 : 2.0, &cfg->mlp_ratio, err) ||
        !module_arg_number(layer, ctx, 5, "e", 0.5, &cfg->e, err) ||
        !module_arg_int(layer, ctx, 6, "g", 1, 1, &cfg->g, err) ||
        !module_arg_bool(layer, ctx, 7, "shortcut", true, &cfg->shortcut, err))
        return false;
    if (cfg->area < 1) cfg->area = 1;  // AAttn splits only when area > 1 (YOLO12's C3k rows write -1)
    if (cfg->n + 1 > NET_MAX_IN)
        return model_spec_error_at(ctx->spec, row->repeats_node, err, "A2C2f takes at most %d repeats",
                                   NET_MAX_IN - 1);
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    if (!module_hidden_channels(layer, ctx, cfg->c2, cfg->e, 1, &cfg->c, err)) return false;
    if (cfg->c % 32)
        return model_spec_error_at(ctx->spec, row->args_node, err,
                                   "A2C2f's hidden channels int(c2 * e) = %lld must be a multiple of 32",
                                   (long long)cfg->c);
    if (cfg->mlp_ratio <= 0 || cfg->mlp_ratio * (double)cfg->c >= (double)MODULE_ARG_INT_MAX)
        return model_spec_error_at(ctx->spec, row->args[4].node, err,
                                   "A2C2f's mlp_ratio must be positive and keep its hidden channels below %d",
                                   MODULE_ARG_INT_MAX);
    if (cfg->a2 && (int64_t)((double)cfg->c * cfg->mlp_ratio) < 1)
        return model_spec_error_at(ctx->spec, row->args[4].node, err, "A2C2f's mlp_ratio leaves no hidden channels");
    if (!cfg->a2 && (cfg->c / 2) % cfg->g)
        return model_spec_error_at(ctx->spec, row->args_node, err,
                                   "A2C2f's C3k blocks need their hidden channels %lld divisible by g = %lld",
                                   (long long)(cfg->c / 2), (long long)cfg->g);
    if (cfg->a2 && cfg->residual && cfg->c1 != cfg->c2)  // x + gamma * y
        return model_spec_error_at(ctx->spec, row->args[0].node, err,
                                   "A2C2f with residual adds its input back: c2 scales to %lld but its input has %lld",
                                   (long long)cfg->c2, (long long)cfg->c1);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 3, (int64_t[]){cfg->c1, cfg->c2, cfg->n}, 1);
    return true;
}

// ---- gamma · y: a layer scale, run as the depthwise 1x1 convolution it is ---------------------------

typedef struct ChannelScaleState {
    Param gamma;  // (C)
    ConvDesc desc;  // groups = C, 1x1, at the built size
} ChannelScaleState;

static ConvDesc channel_scale_desc(Shape s) {
    return conv_desc_make(&(ConvDesc){.n = s.n, .c_in = s.c, .h_in = s.h, .w_in = s.w, .c_out = s.c, .kh = 1, .kw = 1,
                                      .stride = 1, .pad = 0, .dilation = 1, .groups = s.c});
}

static void channel_scale_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    const ChannelScaleState *st = node->state;
    Shape s = node->in[0]->shape;
    node->out->shape = s;
    ConvDesc d = channel_scale_desc(s);
    be->ops->conv2d_forward(be, &d, node->in[0]->data, st->gamma.value, NULL, node->out->data);
}

static void channel_scale_backward(NetNode *node, Backend *be) {
    const ChannelScaleState *st = node->state;
    ConvDesc d = channel_scale_desc(node->in[0]->shape);
    be->ops->conv2d_backward_filter(be, &d, node->in[0]->data, node->dout->data, st->gamma.grad, NULL);
    if (node->din[0]) be->ops->conv2d_backward_data(be, &d, node->dout->data, st->gamma.value, node->din[0]->data);
}

static const NetNodeOps channel_scale_ops = {.forward = channel_scale_forward, .backward = channel_scale_backward};

static NetValue net_channel_scale(ModuleNet *net, Builder *b, NetValue x, Param gamma) {
    Shape s = module_net_shape(net, x);
    YP_CHECK(gamma.n_elems == s.c);
    ChannelScaleState *st = yp_calloc(1, sizeof *st);
    st->gamma = gamma;
    st->desc = channel_scale_desc(s);
    builder_conv_workspace(b, &st->desc);
    return module_net_add(net, b, &channel_scale_ops, 1, &x, NULL, s, st);
}

// ---- ABlock and A2C2f ------------------------------------------------------------------------------

static NetValue net_ablock(ModuleNet *net, Builder *b, NetValue x, const A2c2fConfig *cfg) {
    AttentionSpec attn = attention_spec_area(cfg->c, cfg->c / 32, cfg->area);
    NetValue a = net_add(net, b, x, net_attention(net, b, "attn", x, &attn));
    int64_t hidden = (int64_t)((double)cfg->c * cfg->mlp_ratio);  // int(dim * mlp_ratio)
    return net_add(net, b, a, net_attention_ffn(net, b, "mlp", a, hidden));
}

static bool a2c2f_build(Layer *layer, Builder *b, Error *err) {
    const A2c2fConfig *cfg = layer->config;
    Shape in = layer->in[0]->shape;
    AttentionSpec attn = attention_spec_area(cfg->c, cfg->c / 32, cfg->area);
    if (cfg->a2 && !attention_check_areas(layer, b, in, &attn, err)) return false;
    ModuleNet *net = module_net_begin(layer, b);
    int64_t c = cfg->c;
    Param gamma = {0};
    if (cfg->a2 && cfg->residual)  // a parameter of A2C2f itself: first in its state dict
        gamma = builder_param(b, "gamma", 1, (int64_t[]){cfg->c2}, 0, (ParamInit){.kind = PARAM_INIT_CONST, .value = 0.01});
    NetValue y = net_conv(net, b, "cv1", net_input(0), (ConvBlockSpec){.c_out = c, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    ConvBlock *cv2 = net_conv_ahead(net, b, "cv2", shape_make(in.n, (1 + cfg->n) * c, in.h, in.w),
                                    (ConvBlockSpec){.c_out = cfg->c2, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    YP_CHECK(cfg->n + 1 <= NET_MAX_IN);
    NetValue pieces[NET_MAX_IN];
    pieces[0] = y;
    for (int64_t i = 0; i < cfg->n; i++) {
        if (cfg->a2) {
            for (int j = 0; j < 2; j++) {
                builder_push(b, "m.%lld.%d", (long long)i, j);
                y = net_ablock(net, b, y, cfg);
                builder_pop(b);
            }
        } else {
            builder_push(b, "m.%lld", (long long)i);
            y = net_c3k(net, b, NULL, y,
                        &(C3kSpec){.c_out = c, .n = 2, .shortcut = cfg->shortcut, .groups = cfg->g, .expansion = 0.5,
                                   .k = 3});
            builder_pop(b);
        }
        pieces[1 + i] = y;
    }
    NetValue out = net_conv_node(net, b, cv2, net_concat(net, b, (int)(cfg->n + 1), pieces));
    if (gamma.n_elems) out = net_add(net, b, net_input(0), net_channel_scale(net, b, out, gamma));
    module_net_end(net, b, out);
    return true;
}

const LayerKindOps layer_kind_a2c2f = {
    .name = "A2C2f", .parse = a2c2f_parse, .build = a2c2f_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
