// ResNetLayer: Ultralytics' ResNetLayer(c1, c2, s=1, is_first=False, n=1, e=4) (the -cls-resnet
// models), its arguments written in full (c1 included) and not scaled. The first layer is
// (Conv(c1, c2, 7, 2, p=3), nn.MaxPool2d(3, 2, 1)) with c2 outputs; the others n ResNetBlocks,
// the first ResNetBlock(c1, c2, s, e), then ResNetBlock(e c2, c2, 1, e), with e c2 outputs.
// ResNetBlock(c1, c2, s, e): relu(cv3(cv2(cv1(x))) + shortcut(x)), cv1 = Conv(c1, c2, 1),
// cv2 = Conv(c2, c2, 3, s, p=1), cv3 = Conv(c2, e c2, 1, act=False), shortcut = (Conv(c1, e c2, 1, s,
// act=False)) when s != 1 or c1 != e c2, else nn.Identity; the ReLU is functional (no leaf).
#include <stdlib.h>

#include "layers/module_args.h"
#include "layers/module_net.h"

typedef struct ResNetConfig {
    int64_t c1, c2, s, n, e;
    bool is_first;
} ResNetConfig;

static bool resnet_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    ResNetConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 2, 6, "[c1, c2, s=1, is_first=False, n=1, e=4]", err) ||
        !module_arg_int(layer, ctx, 0, "c1", 0, 1, &cfg->c1, err) ||
        !module_arg_int(layer, ctx, 1, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 2, "s", 1, 1, &cfg->s, err) ||
        !module_arg_bool(layer, ctx, 3, "is_first", false, &cfg->is_first, err) ||
        !module_arg_int(layer, ctx, 4, "n", 1, 1, &cfg->n, err) ||
        !module_arg_int(layer, ctx, 5, "e", 4, 1, &cfg->e, err))
        return false;
    if (cfg->c1 != ctx->c_in[0])  // Ultralytics takes c1 as written: a mismatch fails in PyTorch
        return model_spec_error_at(ctx->spec, layer->row->args[0].node, err,
                                   "ResNetLayer c1 must be its input's channels, %lld, found %lld",
                                   (long long)ctx->c_in[0], (long long)cfg->c1);
    if (cfg->e * cfg->c2 > MODULE_ARG_INT_MAX)
        return model_spec_error_at(ctx->spec, layer->row->args_node, err, "ResNetLayer e * c2 must be at most %d",
                                   MODULE_ARG_INT_MAX);
    layer->c_out = cfg->is_first ? cfg->c2 : cfg->e * cfg->c2;
    module_set_args_text(layer, 0, NULL, 0);
    return true;
}

static NetValue net_resnet_block(ModuleNet *net, Builder *b, NetValue x, int64_t c2, int64_t s, int64_t e) {
    int64_t c1 = module_net_shape(net, x).c, c3 = e * c2;
    NetValue y = net_conv(net, b, "cv1", x, (ConvBlockSpec){.c_out = c2, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    y = net_conv(net, b, "cv2", y, (ConvBlockSpec){.c_out = c2, .k = 3, .stride = s, .pad = 1, .act = true});
    y = net_conv(net, b, "cv3", y, (ConvBlockSpec){.c_out = c3, .k = 1, .pad = CONV_PAD_AUTO});
    NetValue shortcut = x;
    if (s != 1 || c1 != c3) shortcut = net_conv(net, b, "shortcut.0", x, (ConvBlockSpec){.c_out = c3, .k = 1, .stride = s, .pad = CONV_PAD_AUTO});
    else builder_count_leaves(b, 1);  // shortcut is an nn.Identity
    return net_activation(net, b, net_add(net, b, y, shortcut), (ActivationSpec){.kind = ACTIVATION_RELU});
}

static bool resnet_build(Layer *layer, Builder *b, Error *err) {
    const ResNetConfig *cfg = layer->config;
    Shape in = layer->in[0]->shape;
    if (cfg->is_first && !module_check_kernel_fits(layer, b, in, 7, 3, 1, err)) return false;
    ModuleNet *net = module_net_begin(layer, b);
    NetValue y = net_input(0);
    if (cfg->is_first) {
        y = net_conv(net, b, "layer.0", y, (ConvBlockSpec){.c_out = cfg->c2, .k = 7, .stride = 2, .pad = 3, .act = true});
        builder_count_leaves(b, 1);  // layer.1, the nn.MaxPool2d
        y = net_maxpool(net, b, y, 3, 2, 1);
    } else {
        for (int64_t j = 0; j < cfg->n; j++) {
            builder_push(b, "layer.%lld", (long long)j);
            y = net_resnet_block(net, b, y, cfg->c2, j ? 1 : cfg->s, cfg->e);
            builder_pop(b);
        }
    }
    module_net_end(net, b, y);
    return true;
}

const LayerKindOps layer_kind_resnet_layer = {
    .name = "ResNetLayer", .parse = resnet_parse, .build = resnet_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
