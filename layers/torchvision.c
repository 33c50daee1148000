// TorchVision: Ultralytics' TorchVision(model, weights, unwrap=True, truncate=2, split=False) row
// module, `[c2, model, weights, unwrap, truncate]` in the YAML: a torchvision classification network
// unwrapped into an nn.Sequential of its children without the last `truncate` (yolo11-cls-resnet18:
// ResNet-18 without avgpool and fc). yolopipe builds the torchvision ResNets (18, 34: BasicBlock;
// 50, 101, 152: Bottleneck with the stride on its 3x3, torchvision's "v1.5") with torchvision's
// names under "m." ("m.0.weight" conv1, "m.1" bn1, "m.4.0.conv1.weight" layer1's first block, ...).
// Pretrained weights cannot be downloaded here: whatever `weights` says, the network starts from
// yolopipe's initialisation (a notice says so); load trained weights with --weights.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/module_args.h"
#include "layers/module_net.h"

enum { RESNET_STAGES = 4 };

typedef struct ResNetArch {
    const char *name;
    bool bottleneck;                // Bottleneck blocks (expansion 4), else BasicBlock
    int blocks[RESNET_STAGES];      // blocks per stage (layer1..layer4)
} ResNetArch;

static const ResNetArch resnet_archs[] = {
    {"resnet18", false, {2, 2, 2, 2}},
    {"resnet34", false, {3, 4, 6, 3}},
    {"resnet50", true, {3, 4, 6, 3}},
    {"resnet101", true, {3, 4, 23, 3}},
    {"resnet152", true, {3, 8, 36, 3}},
};

typedef struct TorchVisionConfig {
    const ResNetArch *arch;
    int64_t c1, c2;
} TorchVisionConfig;

static int64_t resnet_out_channels(const ResNetArch *arch) { return arch->bottleneck ? 2048 : 512; }

static bool torchvision_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    TorchVisionConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    const ModelRow *row = layer->row;
    int64_t truncate;
    bool unwrap;
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 2, 6, "[c2, model, weights=DEFAULT, unwrap=True, truncate=2, split=False]",
                           err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_bool(layer, ctx, 3, "unwrap", true, &unwrap, err) ||
        !module_arg_int(layer, ctx, 4, "truncate", 2, 0, &truncate, err))
        return false;
    const Arg *model = &row->args[1];
    for (size_t i = 0; model->kind == ARG_KIND_STRING && i < sizeof resnet_archs / sizeof *resnet_archs; i++)
        if (!strcmp(model->s, resnet_archs[i].name)) cfg->arch = &resnet_archs[i];
    if (!cfg->arch)
        return model_spec_error_at(ctx->spec, model->node, err,
                                   "TorchVision model must be one of resnet18, resnet34, resnet50, resnet101, resnet152");
    if (!unwrap || truncate != 2)
        return model_spec_error_at(ctx->spec, row->args[unwrap ? 4 : 3].node, err,
                                   "TorchVision is supported unwrapped with truncate 2 (the network without avgpool and fc)");
    if (row->n_args > 5 && (row->args[5].kind != ARG_KIND_BOOL || row->args[5].b))
        return model_spec_error_at(ctx->spec, row->args[5].node, err, "TorchVision split must be False");
    if (cfg->c1 != 3)
        return model_spec_error_at(ctx->spec, row->from_node, err, "%s takes a 3-channel input, found %lld",
                                   cfg->arch->name, (long long)cfg->c1);
    if (cfg->c2 != resnet_out_channels(cfg->arch))
        return model_spec_error_at(ctx->spec, row->args[0].node, err, "%s gives %lld channels, the row says %lld",
                                   cfg->arch->name, (long long)resnet_out_channels(cfg->arch), (long long)cfg->c2);
    const Arg *weights = row->n_args > 2 ? &row->args[2] : NULL;
    static bool noticed;  // once per process: every graph of a run parses the row
    if ((!weights || weights->kind != ARG_KIND_NONE) && !noticed) {
        noticed = true;
        fprintf(stderr, "%s: notice: layer %d: torchvision's pretrained %s weights are not downloaded; the network "
                        "starts from yolopipe's initialisation\n",
                ctx->spec->name, layer->index, cfg->arch->name);
    }
    layer->c_out = cfg->c2;
    snprintf(layer->args_text, sizeof layer->args_text, "[%s, %s]", cfg->arch->name,
             weights && weights->kind == ARG_KIND_STRING ? weights->s : "None");
    return true;
}

static const ActivationSpec relu = {.kind = ACTIVATION_RELU};

// torchvision's conv + batch norm pair inside a block ("conv1", "bn1"), with a fused ReLU or none.
static NetValue conv_bn(ModuleNet *net, Builder *b, NetValue x, const char *conv, const char *bn, int64_t c_out,
                        int64_t k, int64_t stride, bool with_relu) {
    return net_conv(net, b, NULL, x,
                    (ConvBlockSpec){.c_out = c_out, .k = k, .stride = stride, .pad = k / 2, .act = with_relu,
                                    .act_override = &relu, .conv_name = conv, .bn_name = bn});
}

// One BasicBlock or Bottleneck at the current prefix: relu(main path + identity or downsample(x)).
static NetValue resnet_block(ModuleNet *net, Builder *b, NetValue x, bool bottleneck, int64_t planes, int64_t stride) {
    int64_t c_in = module_net_shape(net, x).c, c_out = bottleneck ? 4 * planes : planes;
    NetValue y;
    if (bottleneck) {
        y = conv_bn(net, b, x, "conv1", "bn1", planes, 1, 1, true);
        y = conv_bn(net, b, y, "conv2", "bn2", planes, 3, stride, true);
        y = conv_bn(net, b, y, "conv3", "bn3", c_out, 1, 1, false);
    } else {
        y = conv_bn(net, b, x, "conv1", "bn1", planes, 3, stride, true);
        y = conv_bn(net, b, y, "conv2", "bn2", planes, 3, 1, false);
    }
    NetValue identity = x;
    if (stride != 1 || c_in != c_out) identity = conv_bn(net, b, x, "downsample.0", "downsample.1", c_out, 1, stride, false);
    builder_count_leaves(b, 1);  // the block's nn.ReLU, applied after each stage and the sum
    return net_activation(net, b, net_add(net, b, y, identity), relu);
}

static bool torchvision_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const TorchVisionConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    builder_push(b, "m");
    NetValue y = conv_bn(net, b, net_input(0), "0", "1", 64, 7, 2, true);
    builder_count_leaves(b, 2);  // m.2 (ReLU) and m.3 (MaxPool2d)
    y = net_maxpool(net, b, y, 3, 2, 1);
    for (int stage = 0; stage < RESNET_STAGES; stage++) {
        for (int i = 0; i < cfg->arch->blocks[stage]; i++) {
            builder_push(b, "%d.%d", 4 + stage, i);
            y = resnet_block(net, b, y, cfg->arch->bottleneck, (int64_t)64 << stage, i == 0 && stage ? 2 : 1);
            builder_pop(b);
        }
    }
    builder_pop(b);
    module_net_end(net, b, y);
    return true;
}

const LayerKindOps layer_kind_torchvision = {
    .name = "TorchVision", .parse = torchvision_parse, .build = torchvision_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
