// C2: Ultralytics' C2(c1, c2, n=1, shortcut=True, g=1, e=0.5) (YOLOv8-p6's neck): a 1x1 Conv to 2c
// channels (c = int(c2 * e)) split in halves; n Bottleneck(c, c, shortcut, g, k=(3, 3), e=1.0)
// chained on the first half, concatenated with the second, and a 1x1 Conv to c2.
#include "layers/c3.h"
#include "layers/module_net.h"

static bool c2_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const C3Config *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    int64_t c = (int64_t)((double)cfg->c2 * cfg->e);
    ConvBlockSpec pointwise = {.c_out = 2 * c, .k = 1, .pad = CONV_PAD_AUTO, .act = true};
    NetValue cv1 = net_conv(net, b, "cv1", net_input(0), pointwise);
    Shape hidden = module_net_shape(net, cv1);
    pointwise.c_out = cfg->c2;
    ConvBlock *cv2 = net_conv_ahead(net, b, "cv2", hidden, pointwise);
    NetValue y = net_channels(net, b, cv1, 0, c);
    NetValue second = net_channels(net, b, cv1, c, c);
    for (int64_t i = 0; i < cfg->n; i++) {
        builder_push(b, "m.%lld", (long long)i);
        y = net_bottleneck(net, b, NULL, y,
                           (BottleneckSpec){.c_out = c, .shortcut = cfg->shortcut, .groups = cfg->g, .k1 = 3, .k2 = 3,
                                            .expansion = 1.0});
        builder_pop(b);
    }
    module_net_end(net, b, net_conv_node(net, b, cv2, net_concat(net, b, 2, (NetValue[]){y, second})));
    return true;
}

const LayerKindOps layer_kind_c2 = {
    .name = "C2", .parse = c3_parse, .build = c2_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
