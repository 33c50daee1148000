// Conv: Ultralytics' Conv(c1, c2, k=1, s=1, p=None, g=1, d=1, act=True), stacked `repeats` times
// (nn.Sequential, names "model.<i>.<j>.") when repeats > 1.
#include <stdlib.h>

#include "layers/blocks.h"
#include "layers/module_args.h"

typedef struct ConvConfig {
    int64_t c1, c2, k, s, p, g, d;
    bool act;
} ConvConfig;

static bool conv_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ConvConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) ||
        !module_args_count(layer, ctx, 1, 7, "[c2, k=1, s=1, p=None, g=1, d=1, act=True]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 1, "k", 1, 1, &cfg->k, err) ||
        !module_arg_int(layer, ctx, 2, "s", 1, 1, &cfg->s, err) ||
        !module_arg_int_or_none(layer, ctx, 3, "p", 0, &cfg->p, err) ||
        !module_arg_int(layer, ctx, 4, "g", 1, 1, &cfg->g, err) ||
        !module_arg_int(layer, ctx, 5, "d", 1, 1, &cfg->d, err) ||
        !module_arg_bool(layer, ctx, 6, "act", true, &cfg->act, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    if (cfg->c1 % cfg->g || cfg->c2 % cfg->g)
        return model_spec_error_at(ctx->spec, layer->row->args[4].node, err,
                                   "groups %lld must divide the input (%lld) and output (%lld) channels",
                                   (long long)cfg->g, (long long)cfg->c1, (long long)cfg->c2);
    if (layer->row->repeats > 1 && cfg->c1 != cfg->c2)
        return model_spec_error_at(ctx->spec, layer->row->repeats_node, err,
                                   "a repeated Conv needs as many input as output channels (%lld -> %lld)",
                                   (long long)cfg->c1, (long long)cfg->c2);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool conv_build(Layer *layer, Builder *b, Error *err) {
    const ConvConfig *cfg = layer->config;
    BlockChain *chain = layer->state = yp_calloc(1, sizeof *chain);
    block_chain_init(chain, BLOCK_KIND_CONV, layer->row->repeats);
    Shape in = layer->in[0]->shape;
    int64_t pad = cfg->p < 0 ? conv_autopad(cfg->k, cfg->d) : cfg->p;
    for (int64_t j = 0; j < chain->n; j++) {
        if (!module_check_kernel_fits(layer, b, in, cfg->k, pad, cfg->d, err)) return false;
        if (chain->n > 1) builder_push(b, "%lld", (long long)j);
        conv_block_build(&chain->convs[j], b,
                         &(ConvBlockSpec){.in = in, .c_out = cfg->c2, .k = cfg->k, .stride = cfg->s, .pad = cfg->p,
                                          .groups = cfg->g, .dilation = cfg->d, .act = cfg->act});
        if (chain->n > 1) builder_pop(b);
        in = chain->convs[j].out.shape;
    }
    block_chain_finish(chain, b);
    layer->out = *block_chain_out(chain, chain->n - 1);
    return true;
}

const LayerKindOps layer_kind_conv = {
    .name = "Conv", .parse = conv_parse, .build = conv_build, .forward = chain_layer_forward,
    .backward = chain_layer_backward, .destroy_state = chain_layer_destroy_state,
};
