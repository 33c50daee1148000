// Bottleneck: Ultralytics' Bottleneck(c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5), stacked
// `repeats` times when repeats > 1 (YOLOv3's darknet stages).
#include <stdlib.h>

#include "layers/blocks.h"
#include "layers/module_args.h"

typedef struct BottleneckConfig {
    int64_t c1, c2, g;
    bool shortcut;
} BottleneckConfig;

static bool bottleneck_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    BottleneckConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) ||
        !module_args_count(layer, ctx, 1, 3, "[c2, shortcut=True, g=1]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_bool(layer, ctx, 1, "shortcut", true, &cfg->shortcut, err) ||
        !module_arg_int(layer, ctx, 2, "g", 1, 1, &cfg->g, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    int64_t hidden = cfg->c2 / 2;
    if (hidden % cfg->g || cfg->c2 % cfg->g)
        return model_spec_error_at(ctx->spec, layer->row->args[2].node, err,
                                   "groups %lld must divide the hidden (%lld) and output (%lld) channels",
                                   (long long)cfg->g, (long long)hidden, (long long)cfg->c2);
    if (layer->row->repeats > 1 && cfg->c1 != cfg->c2)
        return model_spec_error_at(ctx->spec, layer->row->repeats_node, err,
                                   "a repeated Bottleneck needs as many input as output channels (%lld -> %lld)",
                                   (long long)cfg->c1, (long long)cfg->c2);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool bottleneck_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const BottleneckConfig *cfg = layer->config;
    BlockChain *chain = layer->state = yp_calloc(1, sizeof *chain);
    block_chain_init(chain, BLOCK_KIND_BOTTLENECK, layer->row->repeats);
    Shape in = layer->in[0]->shape;
    for (int64_t j = 0; j < chain->n; j++) {
        if (chain->n > 1) builder_push(b, "%lld", (long long)j);
        bottleneck_block_build(&chain->bottlenecks[j], b,
                               &(BottleneckSpec){.in = in, .c_out = cfg->c2, .shortcut = cfg->shortcut,
                                                 .groups = cfg->g, .k1 = 3, .k2 = 3, .expansion = 0.5});
        if (chain->n > 1) builder_pop(b);
        in = chain->bottlenecks[j].out.shape;
    }
    block_chain_finish(chain, b);
    layer->out = *block_chain_out(chain, chain->n - 1);
    return true;
}

const LayerKindOps layer_kind_bottleneck = {
    .name = "Bottleneck", .parse = bottleneck_parse, .build = bottleneck_build, .forward = chain_layer_forward,
    .backward = chain_layer_backward, .destroy_state = chain_layer_destroy_state,
};
