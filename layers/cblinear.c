// YOLOv9e's auxiliary branch (Ultralytics' block.py) and nn.Identity:
//   CBLinear(c1, c2s, k=1, s=1, p=None, g=1): one nn.Conv2d(c1, sum(c2s), k, s, autopad(k, p), groups=g,
//     bias=True) whose output Ultralytics splits into chunks of c2s channels. yolopipe passes the whole
//     output on; each consumer slices its chunk (cblinear_chunk). parse_model does not scale c2s.
//   CBFuse(idx): from [l_0, ..., l_{n-2}, t]: chunk idx[i] of CBLinear l_i, resized by nearest
//     interpolation to t's size, summed with t. Output channels: t's. Here every chunk must have t's
//     channels (torch.stack's rule) and a size that t's is an integer multiple of (the YOLOv9e layout
//     at image sizes that are multiples of the stride); the resize is then nearest upsampling.
//   nn.Identity(*args): its input (YOLOv9e's layer 0, once the Silence module); arguments ignored.
#include <stdio.h>
#include <string.h>

#include "layers/module_args.h"
#include "layers/module_net.h"

enum { CBLINEAR_MAX_CHUNKS = 16 };

typedef struct CBLinearConfig {
    int64_t c2s[CBLINEAR_MAX_CHUNKS];
    int n_chunks;
    int64_t k, s, p, g;  // p: -1 for None (autopad)
} CBLinearConfig;

static bool cblinear_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    CBLinearConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    int64_t c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 5, "[c2s, k=1, s=1, p=None, g=1]", err) ||
        !module_arg_int_list(layer, ctx, 0, "c2s", CBLINEAR_MAX_CHUNKS, 1, cfg->c2s, &cfg->n_chunks, err) ||
        !module_arg_int(layer, ctx, 1, "k", 1, 1, &cfg->k, err) || !module_arg_int(layer, ctx, 2, "s", 1, 1, &cfg->s, err) ||
        !module_arg_int_or_none(layer, ctx, 3, "p", 0, &cfg->p, err) ||
        !module_arg_int(layer, ctx, 4, "g", 1, 1, &cfg->g, err))
        return false;
    int64_t total = 0;
    for (int j = 0; j < cfg->n_chunks; j++) total += cfg->c2s[j];
    if (c1 % cfg->g || total % cfg->g)
        return model_spec_error_at(ctx->spec, layer->row->args[4].node, err,
                                   "CBLinear argument 'g' = %lld must divide its input channels %lld and sum(c2s) = %lld",
                                   (long long)cfg->g, (long long)c1, (long long)total);
    layer->c_out = total;
    snprintf(layer->args_text, sizeof layer->args_text, "[%lld, [", (long long)c1);
    for (int j = 0; j < cfg->n_chunks; j++) {
        size_t used = strlen(layer->args_text);
        snprintf(layer->args_text + used, sizeof layer->args_text - used, "%s%lld", j ? ", " : "", (long long)cfg->c2s[j]);
    }
    size_t used = strlen(layer->args_text);
    snprintf(layer->args_text + used, sizeof layer->args_text - used, "]]");
    return true;
}

static bool cblinear_build(Layer *layer, Builder *b, Error *err) {
    const CBLinearConfig *cfg = layer->config;
    int64_t pad = cfg->p < 0 ? conv_autopad(cfg->k, 1) : cfg->p;
    if (!module_check_kernel_fits(layer, b, layer->in[0]->shape, cfg->k, pad, 1, err)) return false;
    ModuleNet *net = module_net_begin(layer, b);
    module_net_end(net, b,
                   net_conv2d(net, b, "conv", net_input(0),
                              (ConvBlockSpec){.c_out = layer->c_out, .k = cfg->k, .stride = cfg->s, .pad = pad,
                                              .groups = cfg->g}));
    return true;
}

// ---- CBFuse -------------------------------------------------------------------------------------------

typedef struct CBFuseConfig {
    int64_t c0[MODEL_MAX_FROM], count[MODEL_MAX_FROM];  // the chunk taken from each CBLinear input
} CBFuseConfig;

static bool cbfuse_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    CBFuseConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    const ModelRow *row = layer->row;
    int n_lin = layer->n_in - 1;
    int64_t idx[MODEL_MAX_FROM];
    int n_idx;
    if (layer->n_in < 2)
        return model_spec_error_at(ctx->spec, row->from_node, err,
                                   "CBFuse takes CBLinear layers and then the layer to fuse into, found %d input",
                                   layer->n_in);
    if (!module_require_single(layer, ctx, err) || !module_args_count(layer, ctx, 1, 1, "[idx]", err) ||
        !module_arg_int_list(layer, ctx, 0, "idx", MODEL_MAX_FROM, 0, idx, &n_idx, err))
        return false;
    if (n_idx != n_lin)
        return model_spec_error_at(ctx->spec, row->args[0].node, err,
                                   "CBFuse argument 'idx' must give one chunk index per CBLinear input (%d), found %d",
                                   n_lin, n_idx);
    int64_t c_target = ctx->c_in[n_lin];
    for (int k = 0; k < n_lin; k++) {
        int from = layer->in_index[k];
        const Layer *src = from < 0 ? NULL : &ctx->layers[from];
        if (!src || src->kind != LAYER_KIND_CBLINEAR)
            return model_spec_error_at(ctx->spec, row->from_node, err,
                                       "CBFuse input %d (layer %d) must be a CBLinear layer; only the last input may be "
                                       "another module",
                                       k, from);
        const CBLinearConfig *lin = src->config;
        if (idx[k] >= lin->n_chunks)
            return model_spec_error_at(ctx->spec, row->args[0].node, err,
                                       "CBFuse index %lld is out of range for layer %d, a CBLinear of %d chunk%s",
                                       (long long)idx[k], from, lin->n_chunks, lin->n_chunks == 1 ? "" : "s");
        cfg->c0[k] = 0;
        for (int j = 0; j < idx[k]; j++) cfg->c0[k] += lin->c2s[j];
        cfg->count[k] = lin->c2s[idx[k]];
        if (cfg->count[k] != c_target)
            return model_spec_error_at(ctx->spec, row->args[0].node, err,
                                       "CBFuse sums chunk %lld of layer %d (%lld channels) with layer %d's %lld channels; "
                                       "they must be equal",
                                       (long long)idx[k], from, (long long)cfg->count[k], layer->in_index[n_lin],
                                       (long long)c_target);
    }
    layer->c_out = c_target;
    snprintf(layer->args_text, sizeof layer->args_text, "[");
    for (int k = 0; k < n_idx; k++) {
        size_t used = strlen(layer->args_text);
        snprintf(layer->args_text + used, sizeof layer->args_text - used, "%s%lld", k ? ", " : "", (long long)idx[k]);
    }
    size_t used = strlen(layer->args_text);
    snprintf(layer->args_text + used, sizeof layer->args_text - used, "]");
    return true;
}

static bool cbfuse_build(Layer *layer, Builder *b, Error *err) {
    const CBFuseConfig *cfg = layer->config;
    int n_lin = layer->n_in - 1;
    Shape t = layer->in[n_lin]->shape;
    for (int k = 0; k < n_lin; k++) {
        Shape s = layer->in[k]->shape;
        if (t.h % s.h || t.w % s.w || t.h / s.h != t.w / s.w)
            return model_spec_error_at(builder_spec(b), layer->row->from_node, err,
                                       "CBFuse resizes layer %d's %lldx%lld map to layer %d's %lldx%lld at image size "
                                       "%lld: only integer upsampling is supported; use an image size that is a "
                                       "multiple of the largest stride",
                                       layer->in_index[k], (long long)s.h, (long long)s.w, layer->in_index[n_lin],
                                       (long long)t.h, (long long)t.w, (long long)builder_imgsz_h(b));
    }
    ModuleNet *net = module_net_begin(layer, b);
    NetValue terms[MODEL_MAX_FROM];
    for (int k = 0; k < n_lin; k++) {
        int64_t factor = t.h / layer->in[k]->shape.h;
        terms[k] = net_channels(net, b, net_input(k), cfg->c0[k], cfg->count[k]);
        if (factor > 1) terms[k] = net_upsample(net, b, terms[k], factor);
    }
    terms[n_lin] = net_input(n_lin);
    module_net_end(net, b, net_sum(net, b, n_lin + 1, terms));
    builder_count_leaves(b, 1);  // CBFuse itself: F.interpolate and torch.sum count no ops
    return true;
}

// ---- nn.Identity ----------------------------------------------------------------------------------------

static bool identity_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err)) return false;
    layer->c_out = ctx->c_in[0];
    snprintf(layer->args_text, sizeof layer->args_text, "[]");
    return true;
}

static bool identity_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    ModuleNet *net = module_net_begin(layer, b);
    // A copy: the layer owns its output, as every layer does (its gradient is passed straight back).
    module_net_end(net, b, net_channels(net, b, net_input(0), 0, layer->in[0]->shape.c));
    builder_count_leaves(b, 1);
    return true;
}

const LayerKindOps layer_kind_cblinear = {
    .name = "CBLinear", .parse = cblinear_parse, .build = cblinear_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
const LayerKindOps layer_kind_cbfuse = {
    .name = "CBFuse", .parse = cbfuse_parse, .build = cbfuse_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
const LayerKindOps layer_kind_identity = {
    .name = "nn.Identity", .parse = identity_parse, .build = identity_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
