// C3: Ultralytics' C3(c1, c2, n=1, shortcut=True, g=1, e=0.5): cv1 and cv2 (1x1 Convs to c_)
// both read the input; n Bottlenecks (kernels 1 then 3) run on cv1's output; the chain's output and
// cv2's are concatenated and cv3 maps them to c2.
#include <stdlib.h>

#include "layers/blocks.h"
#include "layers/c3.h"
#include "layers/module_args.h"

typedef struct C3State {
    int64_t c;  // hidden channels c_ = int(c2 * e)
    ConvBlock cv1, cv2, cv3;
    BlockChain m;
    Tensor cat, d_cat, d_m_out, d_cv1, d_cv2;
} C3State;

bool c3_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    C3Config *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    cfg->n = layer->row->repeats;
    if (!module_require_inputs(layer, ctx, 1, err) ||
        !module_args_count(layer, ctx, 1, 4, "[c2, shortcut=True, g=1, e=0.5]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_bool(layer, ctx, 1, "shortcut", true, &cfg->shortcut, err) ||
        !module_arg_int(layer, ctx, 2, "g", 1, 1, &cfg->g, err) ||
        !module_arg_number(layer, ctx, 3, "e", 0.5, &cfg->e, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    int64_t c;
    if (!module_hidden_channels(layer, ctx, cfg->c2, cfg->e, cfg->g, &c, err)) return false;
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 3, (int64_t[]){cfg->c1, cfg->c2, cfg->n}, 1);
    return true;
}

static bool c3_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const C3Config *cfg = layer->config;
    C3State *st = layer->state = yp_calloc(1, sizeof *st);
    Shape in = layer->in[0]->shape;
    int64_t c = st->c = (int64_t)((double)cfg->c2 * cfg->e);
    builder_push(b, "cv1");
    conv_block_build(&st->cv1, b, &(ConvBlockSpec){.in = in, .c_out = c, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    builder_pop(b);
    builder_push(b, "cv2");
    conv_block_build(&st->cv2, b, &(ConvBlockSpec){.in = in, .c_out = c, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    builder_pop(b);
    Shape hidden = st->cv1.out.shape;
    Shape cat = shape_make(in.n, 2 * c, in.h, in.w);
    builder_push(b, "cv3");
    conv_block_build(&st->cv3, b,
                     &(ConvBlockSpec){.in = cat, .c_out = cfg->c2, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    builder_pop(b);
    block_chain_init(&st->m, BLOCK_KIND_BOTTLENECK, cfg->n);
    for (int64_t i = 0; i < cfg->n; i++) {
        builder_push(b, "m.%lld", (long long)i);
        bottleneck_block_build(&st->m.bottlenecks[i], b,
                               &(BottleneckSpec){.in = hidden, .c_out = c, .shortcut = cfg->shortcut, .groups = cfg->g,
                                                 .k1 = 1, .k2 = 3, .expansion = 1.0});
        builder_pop(b);
    }
    block_chain_finish(&st->m, b);
    st->cat = builder_tensor(b, cat);
    st->d_cat = builder_tensor(b, cat);
    st->d_m_out = builder_tensor(b, hidden);
    st->d_cv1 = builder_tensor(b, hidden);
    st->d_cv2 = builder_tensor(b, hidden);
    layer->out = st->cv3.out;
    return true;
}

static void c3_forward(Layer *layer, Backend *be, bool train) {
    C3State *st = layer->state;
    const Tensor *x = layer->in[0];
    int64_t n = x->shape.n, hw = shape_hw(x->shape), c = st->c;
    conv_block_forward(&st->cv1, be, x, train);
    conv_block_forward(&st->cv2, be, x, train);
    block_chain_forward(&st->m, be, &st->cv1.out, train);
    st->cat.shape = shape_make(n, 2 * c, x->shape.h, x->shape.w);
    backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = block_chain_out(&st->m, st->m.n - 1)->data,
                                                  .src_c = c, .dst = st->cat.data, .dst_c = 2 * c, .count = c});
    backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = st->cv2.out.data, .src_c = c,
                                                  .dst = st->cat.data, .dst_c = 2 * c, .dst_c0 = c, .count = c});
    conv_block_forward(&st->cv3, be, &st->cat, train);
    layer->out.shape = st->cv3.out.shape;
}

static void c3_backward(Layer *layer, Backend *be) {
    C3State *st = layer->state;
    const Tensor *x = layer->in[0];
    int64_t n = x->shape.n, hw = shape_hw(x->shape), c = st->c;
    size_t hidden_elems = (size_t)(n * c * hw);
    void *dx = layer->din[0] ? layer->din[0]->data : NULL;
    be->ops->zero(be, st->d_cat.data, backend_act_bytes(be, 2 * (int64_t)hidden_elems));
    conv_block_backward(&st->cv3, be, &st->cat, layer->dout.data, st->d_cat.data);
    backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = st->d_cat.data, .src_c = 2 * c,
                                                  .dst = st->d_m_out.data, .dst_c = c, .count = c});
    backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = st->d_cat.data, .src_c = 2 * c, .src_c0 = c,
                                                  .dst = st->d_cv2.data, .dst_c = c, .count = c});
    be->ops->zero(be, st->d_cv1.data, backend_act_bytes(be, (int64_t)hidden_elems));
    block_chain_backward(&st->m, be, &st->cv1.out, st->d_m_out.data, st->d_cv1.data);
    conv_block_backward(&st->cv2, be, x, st->d_cv2.data, dx);
    conv_block_backward(&st->cv1, be, x, st->d_cv1.data, dx);
}

static void c3_destroy_state(Layer *layer) {
    C3State *st = layer->state;
    if (!st) return;
    block_chain_destroy(&st->m);
    free(st);
}

const LayerKindOps layer_kind_c3 = {
    .name = "C3", .parse = c3_parse, .build = c3_build, .forward = c3_forward,
    .backward = c3_backward, .destroy_state = c3_destroy_state,
};
