// SPP: Ultralytics' SPP(c1, c2, k=(5, 9, 13)) (YOLOv3-SPP): a 1x1 Conv to c1 / 2, one shape-keeping
// max-pool per kernel (nn.MaxPool2d(k, 1, k // 2), a leaf each) applied side by side to its output,
// everything concatenated, and a 1x1 Conv to c2.
#include <stdlib.h>

#include "layers/module_args.h"
#include "layers/module_net.h"

enum { SPP_MAX_POOLS = 7 };  // the concat of the input and its pools fits a net node's inputs

typedef struct SppConfig {
    int64_t c1, c2;
    int n_k;
    int64_t k[SPP_MAX_POOLS];
} SppConfig;

static bool spp_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    SppConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 2, "[c2, k=(5, 9, 13)]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err))
        return false;
    if (layer->row->n_args > 1) {
        if (!module_arg_int_list(layer, ctx, 1, "k", SPP_MAX_POOLS, 1, cfg->k, &cfg->n_k, err)) return false;
    } else {
        cfg->n_k = 3;
        cfg->k[0] = 5, cfg->k[1] = 9, cfg->k[2] = 13;
    }
    for (int j = 0; j < cfg->n_k; j++)
        if (cfg->k[j] % 2 == 0)  // an even window with padding k // 2 grows the map by one: no concat
            return model_spec_error_at(ctx->spec, layer->row->args[1].node, err,
                                       "SPP kernels must be odd to keep the size, found %lld", (long long)cfg->k[j]);
    if (cfg->c1 < 2)
        return model_spec_error_at(ctx->spec, layer->row->from_node, err, "SPP needs at least 2 input channels");
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool spp_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const SppConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    ConvBlockSpec pointwise = {.c_out = cfg->c1 / 2, .k = 1, .pad = CONV_PAD_AUTO, .act = true};
    NetValue x = net_conv(net, b, "cv1", net_input(0), pointwise);
    Shape hidden = module_net_shape(net, x);
    pointwise.c_out = cfg->c2;
    ConvBlock *cv2 = net_conv_ahead(net, b, "cv2", shape_make(hidden.n, hidden.c * (cfg->n_k + 1), hidden.h, hidden.w),
                                    pointwise);
    NetValue pieces[SPP_MAX_POOLS + 1];
    pieces[0] = x;
    builder_count_leaves(b, cfg->n_k);  // the nn.MaxPool2d of each kernel
    for (int j = 0; j < cfg->n_k; j++) pieces[j + 1] = net_maxpool(net, b, x, cfg->k[j], 1, cfg->k[j] / 2);
    module_net_end(net, b, net_conv_node(net, b, cv2, net_concat(net, b, cfg->n_k + 1, pieces)));
    return true;
}

const LayerKindOps layer_kind_spp = {
    .name = "SPP", .parse = spp_parse, .build = spp_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
