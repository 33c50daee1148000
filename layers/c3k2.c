// C3k2: Ultralytics' C3k2(c1, c2, n=1, c3k=False, e=0.5, attn=False, g=1, shortcut=True), YOLO11's
// and YOLO12's CSP block: C2f's layout (a 1x1 Conv to 2c channels split in halves, n blocks chained
// on the second half, everything concatenated, a 1x1 Conv to c2) with one of three inner blocks:
// Bottleneck(c, c, shortcut, g) (kernels 3 and 3, e = 0.5), C3k(c, c, 2, shortcut, g) when c3k, or
// Bottleneck followed by PSABlock when attn (YOLO26). parse_model forces c3k at scales m, l and x.
// C3k is C3 with Bottlenecks of kernels (3, 3) and e = 1.0.
#include <stdlib.h>
#include <string.h>

#include "layers/attention.h"
#include "layers/c3k2.h"
#include "layers/module_args.h"
#include "layers/module_net.h"

typedef struct C3k2Config {
    int64_t c1, c2, n, g;
    bool c3k, attn, shortcut;
    double e;
} C3k2Config;

static bool c3k2_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    C3k2Config *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    cfg->n = layer->row->repeats;
    if (!module_require_inputs(layer, ctx, 1, err) ||
        !module_args_count(layer, ctx, 1, 6, "[c2, c3k=False, e=0.5, attn=False, g=1, shortcut=True]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_bool(layer, ctx, 1, "c3k", false, &cfg->c3k, err) ||
        !module_arg_number(layer, ctx, 2, "e", 0.5, &cfg->e, err) ||
        !module_arg_bool(layer, ctx, 3, "attn", false, &cfg->attn, err) ||
        !module_arg_int(layer, ctx, 4, "g", 1, 1, &cfg->g, err) ||
        !module_arg_bool(layer, ctx, 5, "shortcut", true, &cfg->shortcut, err))
        return false;
    // cv2 concatenates cv1's two halves and every repeat's output: a ModuleNet node's inputs.
    if (cfg->n + 2 > NET_MAX_IN)
        return model_spec_error_at(ctx->spec, layer->row->repeats_node, err,
                                   "C3k2 takes at most %d repeats (after the scale's depth multiple), found %lld",
                                   NET_MAX_IN - 2, (long long)cfg->n);
    const char *scale = ctx->spec->scale;
    if (!strcmp(scale, "m") || !strcmp(scale, "l") || !strcmp(scale, "x")) cfg->c3k = true;  // parse_model's rule
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    int64_t c;
    if (!module_hidden_channels(layer, ctx, cfg->c2, cfg->e, cfg->g, &c, err)) return false;
    if (cfg->c3k && !cfg->attn && (c / 2) % cfg->g)
        return model_spec_error_at(ctx->spec, layer->row->args_node, err,
                                   "C3k2's C3k blocks need their hidden channels %lld divisible by g = %lld",
                                   (long long)(c / 2), (long long)cfg->g);
    if (cfg->attn) {
        AttentionSpec attn = attention_spec_mhsa(c, attention_psa_heads(c), 0.5);
        if (!attention_spec_check(layer, ctx, c, &attn, err)) return false;
    }
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 3, (int64_t[]){cfg->c1, cfg->c2, cfg->n}, 1);
    return true;
}

NetValue net_c3k(ModuleNet *net, Builder *b, const char *name, NetValue x, const C3kSpec *spec) {
    Shape in = module_net_shape(net, x);
    int64_t c = (int64_t)((double)spec->c_out * spec->expansion);  // int(c2 * e)
    if (name) builder_push(b, "%s", name);
    ConvBlockSpec pointwise = {.c_out = c, .k = 1, .pad = CONV_PAD_AUTO, .act = true};
    NetValue a = net_conv(net, b, "cv1", x, pointwise);
    NetValue shortcut = net_conv(net, b, "cv2", x, pointwise);
    ConvBlock *cv3 = net_conv_ahead(net, b, "cv3", shape_make(in.n, 2 * c, in.h, in.w),
                                    (ConvBlockSpec){.c_out = spec->c_out, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    NetValue y = a;
    for (int64_t i = 0; i < spec->n; i++) {
        builder_push(b, "m.%lld", (long long)i);
        if (spec->inner)
            y = spec->inner(net, b, y, spec);
        else
            y = net_bottleneck(net, b, NULL, y,
                               (BottleneckSpec){.c_out = c, .shortcut = spec->shortcut, .groups = spec->groups,
                                                .k1 = spec->k, .k2 = spec->k, .expansion = 1.0});
        builder_pop(b);
    }
    NetValue out = net_conv_node(net, b, cv3, net_concat(net, b, 2, (NetValue[]){y, shortcut}));
    if (name) builder_pop(b);
    return out;
}

static bool c3k2_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const C3k2Config *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    Shape in = layer->in[0]->shape;
    int64_t c = (int64_t)((double)cfg->c2 * cfg->e);
    NetValue cv1 = net_conv(net, b, "cv1", net_input(0), (ConvBlockSpec){.c_out = 2 * c, .k = 1,
                                                                          .pad = CONV_PAD_AUTO, .act = true});
    ConvBlock *cv2 = net_conv_ahead(net, b, "cv2", shape_make(in.n, (2 + cfg->n) * c, in.h, in.w),
                                    (ConvBlockSpec){.c_out = cfg->c2, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    YP_CHECK(cfg->n + 2 <= NET_MAX_IN);
    NetValue pieces[NET_MAX_IN];
    pieces[0] = net_channels(net, b, cv1, 0, c);
    pieces[1] = net_channels(net, b, cv1, c, c);
    NetValue y = pieces[1];
    for (int64_t i = 0; i < cfg->n; i++) {
        builder_push(b, "m.%lld", (long long)i);
        if (cfg->attn) {  // Sequential(Bottleneck(c, c, shortcut, g), PSABlock(c, 0.5, max(c // 64, 1)))
            builder_push(b, "0");
            y = net_bottleneck(net, b, NULL, y,
                               (BottleneckSpec){.c_out = c, .shortcut = cfg->shortcut, .groups = cfg->g, .k1 = 3,
                                                .k2 = 3, .expansion = 0.5});
            builder_pop(b);
            y = net_psa_block(net, b, "1", y,
                              &(PsaBlockSpec){.heads = attention_psa_heads(c), .attn_ratio = 0.5, .shortcut = true});
        } else if (cfg->c3k)
            y = net_c3k(net, b, NULL, y,
                        &(C3kSpec){.c_out = c, .n = 2, .shortcut = cfg->shortcut, .groups = cfg->g, .expansion = 0.5,
                                   .k = 3});
        else
            y = net_bottleneck(net, b, NULL, y,
                               (BottleneckSpec){.c_out = c, .shortcut = cfg->shortcut, .groups = cfg->g, .k1 = 3,
                                                .k2 = 3, .expansion = 0.5});
        builder_pop(b);
        pieces[2 + i] = y;
    }
    module_net_end(net, b, net_conv_node(net, b, cv2, net_concat(net, b, (int)(cfg->n + 2), pieces)));
    return true;
}

const LayerKindOps layer_kind_c3k2 = {
    .name = "C3k2", .parse = c3k2_parse, .build = c3k2_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
