// YOLOv9's backbone and neck modules (Ultralytics' block.py):
//   RepNCSPELAN4(c1, c2, c3, c4, n=1): cv1 = Conv(c1, c3, 1) chunked in halves; cv2 = RepCSP(c3 // 2,
//     c4, n) then Conv(c4, c4, 3) on the second half; cv3 = the same on cv2's output; cv4 = Conv(c3 +
//     2 c4, c2, 1) on everything concatenated. RepCSP is C3 with RepBottlenecks (e = 1.0), whose cv1
//     is RepConv(c, c, 3): Conv3x3 + Conv1x1 (both act=False) summed, then RepConv.default_act (SiLU,
//     a class-level module, not the model's activation). RepConv's identity batch norm exists only
//     with bn=True, which RepBottleneck never passes.
//   ELAN1(c1, c2, c3, c4): the same layout with plain Conv3x3 for cv2 and cv3.
//   AConv(c1, c2): avg_pool2d(2, 1) then Conv(c1, c2, 3, 2, 1).
//   ADown(c1, c2): avg_pool2d(2, 1), halves; Conv(c1/2, c2/2, 3, 2, 1) on the first, max_pool2d(3, 2,
//     1) then Conv(c1/2, c2/2, 1) on the second; concatenated.
//   SPPELAN(c1, c2, c3, k=5): cv1 = Conv(c1, c3, 1), three chained nn.MaxPool2d(k, 1, k // 2),
//     cv5 = Conv(4 c3, c2, 1) on all four concatenated.
// parse_model scales c2 by width (base_modules) and none of the other channel arguments, and does not
// pass the row's repeats into them.
#include "layers/c3k2.h"
#include "layers/module_args.h"
#include "layers/module_net.h"

typedef struct ElanConfig {
    int64_t c2, c3, c4, n;  // n: RepCSP's repeats (RepNCSPELAN4), 0 for ELAN1
    int64_t k;              // SPPELAN's pool kernel
} ElanConfig;

static ConvBlockSpec elan_conv(int64_t c_out, int64_t k) {
    return (ConvBlockSpec){.c_out = c_out, .k = k, .pad = CONV_PAD_AUTO, .act = true};
}

// Channels arguments (from index `first`, `count` of them) that parse_model passes unscaled.
static bool elan_parse_channels(Layer *layer, const ParseContext *ctx, ElanConfig *cfg, int64_t *dst[], int first,
                                int count, const char *const names[], Error *err) {
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err)) return false;
    int64_t c2;
    if (!module_arg_int(layer, ctx, 0, "c2", 0, 1, &c2, err)) return false;
    cfg->c2 = module_scale_channels(ctx->spec, c2);
    for (int k = 0; k < count; k++)
        if (!module_arg_int(layer, ctx, first + k, names[k], 0, 1, dst[k], err)) return false;
    layer->c_out = cfg->c2;
    return true;
}

// RepNCSPELAN4 and ELAN1: torch's chunk(2) of cv1's c3 channels needs two chunks.
static bool elan_parse_common(Layer *layer, const ParseContext *ctx, ElanConfig *cfg, Error *err) {
    if (!elan_parse_channels(layer, ctx, cfg, (int64_t *[]){&cfg->c3, &cfg->c4}, 1, 2, (const char *[]){"c3", "c4"},
                             err))
        return false;
    if (cfg->c3 < 2)
        return model_spec_error_at(ctx->spec, layer->row->args[1].node, err,
                                   "%s argument 'c3' must be at least 2 (cv1's output is split in halves), found %lld",
                                   layer->row->module, (long long)cfg->c3);
    module_set_args_text(layer, 2, (int64_t[]){ctx->c_in[0], cfg->c2}, 1);
    return true;
}

static bool repncspelan4_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ElanConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    return module_args_count(layer, ctx, 3, 4, "[c2, c3, c4, n=1]", err) &&
           module_arg_int(layer, ctx, 3, "n", 1, 1, &cfg->n, err) && elan_parse_common(layer, ctx, cfg, err);
}

static bool elan1_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ElanConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    return module_args_count(layer, ctx, 3, 3, "[c2, c3, c4]", err) && elan_parse_common(layer, ctx, cfg, err);
}

// RepConv(c1, c2, 3, 1) in training form: conv1 (3x3) + conv2 (1x1), then SiLU.
static NetValue net_repconv(ModuleNet *net, Builder *b, NetValue x, int64_t c_out) {
    NetValue a = net_conv(net, b, "conv1", x, (ConvBlockSpec){.c_out = c_out, .k = 3, .pad = 1});
    NetValue c = net_conv(net, b, "conv2", x, (ConvBlockSpec){.c_out = c_out, .k = 1, .pad = 0});
    builder_count_shared_module(b, SHARED_MODULE_REPCONV_ACT);
    return net_activation(net, b, net_add(net, b, a, c), ACTIVATION_SPEC_SILU);
}

// RepBottleneck(c, c, shortcut, g, (3, 3), e=1.0): RepConv cv1, Conv cv2, and the residual.
static NetValue net_rep_bottleneck(ModuleNet *net, Builder *b, NetValue x, const C3kSpec *spec) {
    int64_t c = module_net_shape(net, x).c;
    builder_push(b, "cv1");
    NetValue h = net_repconv(net, b, x, c);
    builder_pop(b);
    NetValue y = net_conv(net, b, "cv2", h, (ConvBlockSpec){.c_out = c, .k = 3, .pad = CONV_PAD_AUTO,
                                                            .groups = spec->groups, .act = true});
    return spec->shortcut ? net_add(net, b, x, y) : y;
}

// cv2 or cv3 of RepNCSPELAN4 (RepCSP then Conv3x3, an nn.Sequential) or of ELAN1 (a Conv3x3).
static NetValue elan_branch(ModuleNet *net, Builder *b, const char *name, NetValue x, const ElanConfig *cfg) {
    if (!cfg->n) return net_conv(net, b, name, x, elan_conv(cfg->c4, 3));
    builder_push(b, "%s", name);
    NetValue y = net_c3k(net, b, "0", x,
                         &(C3kSpec){.c_out = cfg->c4, .n = cfg->n, .groups = 1, .k = 3, .shortcut = true,
                                    .expansion = 0.5, .inner = net_rep_bottleneck});
    y = net_conv(net, b, "1", y, elan_conv(cfg->c4, 3));
    builder_pop(b);
    return y;
}

static bool elan_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const ElanConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    NetValue cv1 = net_conv(net, b, "cv1", net_input(0), elan_conv(cfg->c3, 1));
    int64_t first = cfg->c3 - cfg->c3 / 2;  // torch.chunk: the first chunk takes the odd channel
    NetValue y[4] = {net_channels(net, b, cv1, 0, first), net_channels(net, b, cv1, first, cfg->c3 / 2)};
    y[2] = elan_branch(net, b, "cv2", y[1], cfg);
    y[3] = elan_branch(net, b, "cv3", y[2], cfg);
    module_net_end(net, b, net_conv(net, b, "cv4", net_concat(net, b, 4, y), elan_conv(cfg->c2, 1)));
    return true;
}

// ---- AConv and ADown -----------------------------------------------------------------------------------

static bool down_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ElanConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    if (!module_args_count(layer, ctx, 1, 1, "[c2]", err) || !elan_parse_channels(layer, ctx, cfg, NULL, 1, 0, NULL, err))
        return false;
    module_set_args_text(layer, 2, (int64_t[]){ctx->c_in[0], cfg->c2}, 1);
    return true;
}

static bool adown_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    if (!down_parse(layer, ctx, err)) return false;
    // chunk(2) of an odd channel count gives cv1 one channel more than Conv(c1 // 2, ...) takes.
    if (ctx->c_in[0] % 2)
        return model_spec_error_at(ctx->spec, layer->row->from_node, err,
                                   "ADown splits its input in halves: it needs an even channel count, found %lld",
                                   (long long)ctx->c_in[0]);
    return true;
}

// avg_pool2d(x, 2, 1, 0) needs a 2x2 input.
static NetValue down_pool(ModuleNet *net, Builder *b, const Layer *layer, bool *ok, Error *err) {
    Shape in = layer->in[0]->shape;
    *ok = in.h >= 2 && in.w >= 2;
    if (!*ok)
        model_spec_error_at(builder_spec(b), layer->row->module_node, err,
                            "%s needs an input of at least 2x2 for its 2x2 average pool, found %lldx%lld at image size "
                            "%lld; use a larger image size",
                            layer->row->module, (long long)in.h, (long long)in.w, (long long)builder_imgsz_h(b));
    return *ok ? net_avgpool(net, b, net_input(0), 2, 1, 0) : net_input(0);
}

static bool aconv_build(Layer *layer, Builder *b, Error *err) {
    const ElanConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    bool ok;
    NetValue x = down_pool(net, b, layer, &ok, err);
    if (!ok) return false;
    NetValue y = net_conv(net, b, "cv1", x, (ConvBlockSpec){.c_out = cfg->c2, .k = 3, .stride = 2, .pad = 1, .act = true});
    module_net_end(net, b, y);
    return true;
}

static bool adown_build(Layer *layer, Builder *b, Error *err) {
    const ElanConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    bool ok;
    NetValue x = down_pool(net, b, layer, &ok, err);
    if (!ok) return false;
    int64_t half = layer->in[0]->shape.c / 2, c = cfg->c2 / 2;
    NetValue y[2];
    y[0] = net_conv(net, b, "cv1", net_channels(net, b, x, 0, half),
                    (ConvBlockSpec){.c_out = c, .k = 3, .stride = 2, .pad = 1, .act = true});
    NetValue pooled = net_maxpool(net, b, net_channels(net, b, x, half, half), 3, 2, 1);
    y[1] = net_conv(net, b, "cv2", pooled, (ConvBlockSpec){.c_out = c, .k = 1, .pad = 0, .act = true});
    module_net_end(net, b, net_concat(net, b, 2, y));
    return true;
}

// ---- SPPELAN ----------------------------------------------------------------------------------------------

static bool sppelan_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ElanConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    if (!module_args_count(layer, ctx, 2, 3, "[c2, c3, k=5]", err) ||
        !module_arg_int(layer, ctx, 2, "k", 5, 1, &cfg->k, err) ||
        !elan_parse_channels(layer, ctx, cfg, (int64_t *[]){&cfg->c3}, 1, 1, (const char *[]){"c3"}, err))
        return false;
    // An even kernel with padding k // 2 grows the map by one, and torch.cat of the pools then fails.
    if (cfg->k % 2 == 0)
        return model_spec_error_at(ctx->spec, layer->row->args[2].node, err,
                                   "SPPELAN argument 'k' must be odd (its pools keep the map size), found %lld",
                                   (long long)cfg->k);
    module_set_args_text(layer, 2, (int64_t[]){ctx->c_in[0], cfg->c2}, 1);
    return true;
}

static bool sppelan_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const ElanConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    NetValue y[4];
    y[0] = net_conv(net, b, "cv1", net_input(0), elan_conv(cfg->c3, 1));
    for (int j = 1; j < 4; j++) y[j] = net_maxpool(net, b, y[j - 1], cfg->k, 1, cfg->k / 2);
    builder_count_leaves(b, 3);  // cv2, cv3 and cv4: three nn.MaxPool2d (thop counts them 0 ops)
    module_net_end(net, b, net_conv(net, b, "cv5", net_concat(net, b, 4, y), elan_conv(cfg->c2, 1)));
    return true;
}

const LayerKindOps layer_kind_repncspelan4 = {
    .name = "RepNCSPELAN4", .parse = repncspelan4_parse, .build = elan_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
const LayerKindOps layer_kind_elan1 = {
    .name = "ELAN1", .parse = elan1_parse, .build = elan_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
const LayerKindOps layer_kind_aconv = {
    .name = "AConv", .parse = down_parse, .build = aconv_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
const LayerKindOps layer_kind_adown = {
    .name = "ADown", .parse = adown_parse, .build = adown_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
const LayerKindOps layer_kind_sppelan = {
    .name = "SPPELAN", .parse = sppelan_parse, .build = sppelan_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
