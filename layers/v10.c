// YOLOv10's backbone and neck modules: SCDown(c1, c2, k, s) (a 1x1 Conv to c2, then a depthwise
// k x k Conv of stride s without activation) and C2fCIB(c1, c2, n=1, shortcut=False, lk=False, g=1,
// e=0.5): C2f's layout with n CIB(c, c, shortcut, e=1.0, lk) blocks. CIB(c1, c2, shortcut, e, lk)
// is the Sequential cv1 = (Conv3x3 depthwise on c1, Conv1x1 to 2c_, RepVGGDW(2c_) when lk else a
// depthwise Conv3x3, Conv1x1 to c2, Conv3x3 depthwise on c2), c_ = int(c2 * e), plus x when shortcut
// and c1 == c2. RepVGGDW(ed) in its training form: SiLU(Conv7x7(ed, g=ed, act=False)(x) +
// Conv3x3(ed, g=ed, act=False)(x)), the SiLU its own module (not the model's activation).
#include <stdlib.h>

#include "layers/module_args.h"
#include "layers/module_net.h"

typedef struct ScDownConfig {
    int64_t c1, c2, k, s;
} ScDownConfig;

static bool scdown_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ScDownConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 3, 3, "[c2, k, s]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 1, "k", 0, 1, &cfg->k, err) ||
        !module_arg_int(layer, ctx, 2, "s", 0, 1, &cfg->s, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool scdown_build(Layer *layer, Builder *b, Error *err) {
    const ScDownConfig *cfg = layer->config;
    if (!module_check_kernel_fits(layer, b, layer->in[0]->shape, cfg->k, conv_autopad(cfg->k, 1), 1, err)) return false;
    ModuleNet *net = module_net_begin(layer, b);
    NetValue y = net_conv(net, b, "cv1", net_input(0), (ConvBlockSpec){.c_out = cfg->c2, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    y = net_conv(net, b, "cv2", y,
                 (ConvBlockSpec){.c_out = cfg->c2, .k = cfg->k, .stride = cfg->s, .pad = CONV_PAD_AUTO, .groups = cfg->c2});
    module_net_end(net, b, y);
    return true;
}

const LayerKindOps layer_kind_scdown = {
    .name = "SCDown", .parse = scdown_parse, .build = scdown_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};

// A depthwise k x k Conv (groups = its channels) at `name`.
static NetValue net_depthwise(ModuleNet *net, Builder *b, const char *name, NetValue x, int64_t k, bool act) {
    int64_t c = module_net_shape(net, x).c;
    return net_conv(net, b, name, x, (ConvBlockSpec){.c_out = c, .k = k, .pad = CONV_PAD_AUTO, .groups = c, .act = act});
}

static NetValue net_repvggdw(ModuleNet *net, Builder *b, const char *name, NetValue x) {
    builder_push(b, "%s", name);
    // Two statements: C leaves the order of a call's arguments open, and conv must be declared first.
    NetValue large = net_depthwise(net, b, "conv", x, 7, false);
    NetValue y = net_add(net, b, large, net_depthwise(net, b, "conv1", x, 3, false));
    builder_pop(b);
    builder_count_leaves(b, 1);  // RepVGGDW.act, an nn.SiLU of its own
    return net_activation(net, b, y, ACTIVATION_SPEC_SILU);
}

static NetValue net_cib(ModuleNet *net, Builder *b, NetValue x, int64_t c2, bool shortcut, double e, bool lk) {
    int64_t c1 = module_net_shape(net, x).c, c = (int64_t)((double)c2 * e);
    ConvBlockSpec pointwise = {.c_out = 2 * c, .k = 1, .pad = CONV_PAD_AUTO, .act = true};
    NetValue y = net_depthwise(net, b, "cv1.0", x, 3, true);
    y = net_conv(net, b, "cv1.1", y, pointwise);
    y = lk ? net_repvggdw(net, b, "cv1.2", y) : net_depthwise(net, b, "cv1.2", y, 3, true);
    pointwise.c_out = c2;
    y = net_conv(net, b, "cv1.3", y, pointwise);
    y = net_depthwise(net, b, "cv1.4", y, 3, true);
    return shortcut && c1 == c2 ? net_add(net, b, x, y) : y;
}

typedef struct C2fCibConfig {
    int64_t c1, c2, n, g;
    bool shortcut, lk;
    double e;
} C2fCibConfig;

static bool c2fcib_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    C2fCibConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    cfg->n = layer->row->repeats;
    if (!module_require_inputs(layer, ctx, 1, err) ||
        !module_args_count(layer, ctx, 1, 5, "[c2, shortcut=False, lk=False, g=1, e=0.5]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_bool(layer, ctx, 1, "shortcut", false, &cfg->shortcut, err) ||
        !module_arg_bool(layer, ctx, 2, "lk", false, &cfg->lk, err) ||
        !module_arg_int(layer, ctx, 3, "g", 1, 1, &cfg->g, err) ||
        !module_arg_number(layer, ctx, 4, "e", 0.5, &cfg->e, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    int64_t c;  // C2f's own Bottlenecks (replaced by the CIBs) still need c divisible by g
    if (!module_hidden_channels(layer, ctx, cfg->c2, cfg->e, cfg->g, &c, err)) return false;
    if (cfg->n + 2 > NET_MAX_IN)
        return model_spec_error_at(ctx->spec, layer->row->repeats_node, err, "C2fCIB takes at most %d repeats here",
                                   NET_MAX_IN - 2);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 3, (int64_t[]){cfg->c1, cfg->c2, cfg->n}, 1);
    return true;
}

static bool c2fcib_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const C2fCibConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    Shape in = layer->in[0]->shape;
    int64_t c = (int64_t)((double)cfg->c2 * cfg->e);
    NetValue cv1 = net_conv(net, b, "cv1", net_input(0), (ConvBlockSpec){.c_out = 2 * c, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    ConvBlock *cv2 = net_conv_ahead(net, b, "cv2", shape_make(in.n, (2 + cfg->n) * c, in.h, in.w),
                                    (ConvBlockSpec){.c_out = cfg->c2, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    NetValue pieces[NET_MAX_IN];
    pieces[0] = net_channels(net, b, cv1, 0, c);
    pieces[1] = net_channels(net, b, cv1, c, c);
    for (int64_t i = 0; i < cfg->n; i++) {
        builder_push(b, "m.%lld", (long long)i);
        pieces[2 + i] = net_cib(net, b, pieces[1 + i], c, cfg->shortcut, 1.0, cfg->lk);
        builder_pop(b);
    }
    module_net_end(net, b, net_conv_node(net, b, cv2, net_concat(net, b, (int)(cfg->n + 2), pieces)));
    return true;
}

const LayerKindOps layer_kind_c2fcib = {
    .name = "C2fCIB", .parse = c2fcib_parse, .build = c2fcib_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
