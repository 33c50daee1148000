// The Ghost family (YOLOv8-ghost): GhostConv(c1, c2, k=1, s=1, g=1, act=True),
// GhostBottleneck(c1, c2, k=3, s=1), C3Ghost(c1, c2, n=1, shortcut=True, g=1, e=0.5) (C3 with n
// GhostBottleneck(c_, c_), which take neither shortcut nor g) and DWConv(c1, c2, k=1, s=1, d=1,
// act=True), each a row module whose c2 parse_model scales by width.
#include <stdlib.h>

#include "layers/c3.h"
#include "layers/c3k2.h"
#include "layers/ghost.h"
#include "layers/module_args.h"

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

NetValue net_ghostconv(ModuleNet *net, Builder *b, const char *name, NetValue x, ConvBlockSpec spec) {
    int64_t c = spec.c_out / 2;
    if (name) builder_push(b, "%s", name);
    NetValue y = net_conv(net, b, "cv1", x,
                          (ConvBlockSpec){.c_out = c, .k = spec.k, .stride = spec.stride, .pad = CONV_PAD_AUTO,
                                          .groups = spec.groups, .act = spec.act});
    NetValue z = net_conv(net, b, "cv2", y, (ConvBlockSpec){.c_out = c, .k = 5, .pad = CONV_PAD_AUTO, .groups = c, .act = spec.act});
    if (name) builder_pop(b);
    return net_concat(net, b, 2, (NetValue[]){y, z});
}

NetValue net_dwconv(ModuleNet *net, Builder *b, const char *name, NetValue x, ConvBlockSpec spec) {
    spec.groups = gcd64(module_net_shape(net, x).c, spec.c_out);
    spec.pad = CONV_PAD_AUTO;
    return net_conv(net, b, name, x, spec);
}

NetValue net_ghost_bottleneck(ModuleNet *net, Builder *b, const char *name, NetValue x, int64_t c2, int64_t k,
                              int64_t s) {
    int64_t c1 = module_net_shape(net, x).c, c = c2 / 2;
    if (name) builder_push(b, "%s", name);
    NetValue y = net_ghostconv(net, b, "conv.0", x, (ConvBlockSpec){.c_out = c, .k = 1, .act = true});
    if (s == 2) y = net_dwconv(net, b, "conv.1", y, (ConvBlockSpec){.c_out = c, .k = k, .stride = s});
    else builder_count_leaves(b, 1);  // conv.1 is an nn.Identity
    y = net_ghostconv(net, b, "conv.2", y, (ConvBlockSpec){.c_out = c2, .k = 1});
    NetValue shortcut = x;
    if (s == 2) {
        shortcut = net_dwconv(net, b, "shortcut.0", x, (ConvBlockSpec){.c_out = c1, .k = k, .stride = s});
        shortcut = net_conv(net, b, "shortcut.1", shortcut, (ConvBlockSpec){.c_out = c2, .k = 1, .pad = CONV_PAD_AUTO});
    } else {
        builder_count_leaves(b, 1);  // shortcut is an nn.Identity
    }
    if (name) builder_pop(b);
    return net_add(net, b, y, shortcut);
}

// ---- GhostConv and DWConv rows -----------------------------------------------------------------------

typedef struct GhostConvConfig {
    int64_t c1, c2, k, s, g, d;
    bool act;
} GhostConvConfig;

static bool ghostconv_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    GhostConvConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 5, "[c2, k=1, s=1, g=1, act=True]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 1, "k", 1, 1, &cfg->k, err) ||
        !module_arg_int(layer, ctx, 2, "s", 1, 1, &cfg->s, err) ||
        !module_arg_int(layer, ctx, 3, "g", 1, 1, &cfg->g, err) ||
        !module_arg_bool(layer, ctx, 4, "act", true, &cfg->act, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    if (cfg->c1 % cfg->g || (cfg->c2 / 2) % cfg->g)
        return model_spec_error_at(ctx->spec, layer->row->args[3].node, err,
                                   "GhostConv groups %lld must divide the input (%lld) and hidden (%lld) channels",
                                   (long long)cfg->g, (long long)cfg->c1, (long long)(cfg->c2 / 2));
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool ghostconv_build(Layer *layer, Builder *b, Error *err) {
    const GhostConvConfig *cfg = layer->config;
    if (!module_check_kernel_fits(layer, b, layer->in[0]->shape, cfg->k, conv_autopad(cfg->k, 1), 1, err)) return false;
    ModuleNet *net = module_net_begin(layer, b);
    module_net_end(net, b,
                   net_ghostconv(net, b, NULL, net_input(0),
                                 (ConvBlockSpec){.c_out = cfg->c2, .k = cfg->k, .stride = cfg->s, .groups = cfg->g,
                                                 .act = cfg->act}));
    return true;
}

const LayerKindOps layer_kind_ghostconv = {
    .name = "GhostConv", .parse = ghostconv_parse, .build = ghostconv_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};

static bool dwconv_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    GhostConvConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 5, "[c2, k=1, s=1, d=1, act=True]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 1, "k", 1, 1, &cfg->k, err) ||
        !module_arg_int(layer, ctx, 2, "s", 1, 1, &cfg->s, err) ||
        !module_arg_int(layer, ctx, 3, "d", 1, 1, &cfg->d, err) ||
        !module_arg_bool(layer, ctx, 4, "act", true, &cfg->act, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool dwconv_build(Layer *layer, Builder *b, Error *err) {
    const GhostConvConfig *cfg = layer->config;
    if (!module_check_kernel_fits(layer, b, layer->in[0]->shape, cfg->k, conv_autopad(cfg->k, cfg->d), cfg->d, err))
        return false;
    ModuleNet *net = module_net_begin(layer, b);
    module_net_end(net, b,
                   net_dwconv(net, b, NULL, net_input(0),
                              (ConvBlockSpec){.c_out = cfg->c2, .k = cfg->k, .stride = cfg->s, .dilation = cfg->d,
                                              .act = cfg->act}));
    return true;
}

const LayerKindOps layer_kind_dwconv = {
    .name = "DWConv", .parse = dwconv_parse, .build = dwconv_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};

// ---- GhostBottleneck and C3Ghost rows ----------------------------------------------------------------

typedef struct GhostBottleneckConfig {
    int64_t c1, c2, k, s;
} GhostBottleneckConfig;

static bool ghost_bottleneck_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    GhostBottleneckConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 3, "[c2, k=3, s=1]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 1, "k", 3, 1, &cfg->k, err) ||
        !module_arg_int(layer, ctx, 2, "s", 1, 1, &cfg->s, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    if (cfg->s != 2 && cfg->c1 != cfg->c2)  // the identity shortcut is added to c2 channels
        return model_spec_error_at(ctx->spec, layer->row->args[0].node, err,
                                   "GhostBottleneck with s != 2 keeps the channels: input %lld, c2 %lld",
                                   (long long)cfg->c1, (long long)cfg->c2);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool ghost_bottleneck_build(Layer *layer, Builder *b, Error *err) {
    const GhostBottleneckConfig *cfg = layer->config;
    if (cfg->s == 2 &&
        !module_check_kernel_fits(layer, b, layer->in[0]->shape, cfg->k, conv_autopad(cfg->k, 1), 1, err))
        return false;
    ModuleNet *net = module_net_begin(layer, b);
    module_net_end(net, b, net_ghost_bottleneck(net, b, NULL, net_input(0), cfg->c2, cfg->k, cfg->s));
    return true;
}

const LayerKindOps layer_kind_ghost_bottleneck = {
    .name = "GhostBottleneck", .parse = ghost_bottleneck_parse, .build = ghost_bottleneck_build,
    .forward = module_net_layer_forward, .backward = module_net_layer_backward,
    .destroy_state = module_net_layer_destroy_state,
};

static bool c3ghost_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    if (!c3_parse(layer, ctx, err)) return false;
    const C3Config *cfg = layer->config;
    int64_t c = (int64_t)((double)cfg->c2 * cfg->e);
    // GhostBottleneck(c_, c_)'s inner GhostConv gives 2 * (c_ // 4) channels, which its next Conv
    // takes as c_ // 2 (and the row's scaled c2, a multiple of 8, always fits).
    if (c % 4)
        return model_spec_error_at(ctx->spec, layer->row->args_node, err,
                                   "C3Ghost needs its hidden channels int(c2 * e) = %lld to be a multiple of 4",
                                   (long long)c);
    return true;
}

static NetValue c3ghost_block(ModuleNet *net, Builder *b, NetValue x, const C3kSpec *spec) {
    (void)spec;
    int64_t c = module_net_shape(net, x).c;
    return net_ghost_bottleneck(net, b, NULL, x, c, 3, 1);
}

static bool c3ghost_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const C3Config *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    module_net_end(net, b,
                   net_c3k(net, b, NULL, net_input(0),
                           &(C3kSpec){.c_out = cfg->c2, .n = cfg->n, .expansion = cfg->e, .inner = c3ghost_block}));
    return true;
}

const LayerKindOps layer_kind_c3ghost = {
    .name = "C3Ghost", .parse = c3ghost_parse, .build = c3ghost_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
