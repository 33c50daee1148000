// C2f: Ultralytics' C2f(c1, c2, n=1, shortcut=False, g=1, e=0.5). A 1x1 Conv to 2c channels is
// split in halves; n Bottlenecks run one after another on the second half; all 2 + n pieces are
// concatenated and a 1x1 Conv maps them to c2.
#include <stdlib.h>

#include "layers/blocks.h"
#include "layers/module_args.h"

typedef struct C2fConfig {
    int64_t c1, c2, n, g;
    bool shortcut;
    double e;
} C2fConfig;

typedef struct C2fState {
    int64_t c;                   // hidden channels, int(c2 * e)
    ConvBlock cv1, cv2;
    BottleneckBlock *m;          // n bottlenecks
    Tensor second_half;          // (N, c, H, W) copy of cv1's second half: the first bottleneck's input
    Tensor cat;                  // (N, (2 + n) c, H, W)
    Tensor d_cat, d_cv1, d_second_half;
    Tensor *d_m;                 // gradient of each bottleneck's output
} C2fState;

static bool c2f_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    C2fConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    cfg->n = layer->row->repeats;
    if (!module_require_inputs(layer, ctx, 1, err) ||
        !module_args_count(layer, ctx, 1, 4, "[c2, shortcut=False, g=1, e=0.5]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_bool(layer, ctx, 1, "shortcut", false, &cfg->shortcut, err) ||
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

static bool c2f_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const C2fConfig *cfg = layer->config;
    C2fState *st = layer->state = yp_calloc(1, sizeof *st);
    Shape in = layer->in[0]->shape;
    int64_t c = st->c = (int64_t)((double)cfg->c2 * cfg->e);
    builder_push(b, "cv1");
    conv_block_build(&st->cv1, b,
                     &(ConvBlockSpec){.in = in, .c_out = 2 * c, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    builder_pop(b);
    // Declared in Ultralytics' order (cv1, cv2, m) so that the state dict lists tensors as theirs does.
    Shape cat = shape_make(in.n, (2 + cfg->n) * c, in.h, in.w);
    builder_push(b, "cv2");
    conv_block_build(&st->cv2, b,
                     &(ConvBlockSpec){.in = cat, .c_out = cfg->c2, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    builder_pop(b);
    Shape half = shape_make(in.n, c, in.h, in.w);
    st->second_half = builder_tensor(b, half);
    st->m = yp_calloc((size_t)cfg->n, sizeof *st->m);
    st->d_m = yp_calloc((size_t)cfg->n, sizeof *st->d_m);
    for (int64_t i = 0; i < cfg->n; i++) {
        builder_push(b, "m.%lld", (long long)i);
        bottleneck_block_build(&st->m[i], b,
                               &(BottleneckSpec){.in = half, .c_out = c, .shortcut = cfg->shortcut, .groups = cfg->g,
                                                 .k1 = 3, .k2 = 3, .expansion = 1.0});
        builder_pop(b);
        st->d_m[i] = builder_tensor(b, half);
    }
    st->cat = builder_tensor(b, cat);
    st->d_cat = builder_tensor(b, cat);
    st->d_cv1 = builder_tensor(b, st->cv1.out.shape);
    st->d_second_half = builder_tensor(b, half);
    layer->out = st->cv2.out;
    return true;
}

static void c2f_forward(Layer *layer, Backend *be, bool train) {
    const C2fConfig *cfg = layer->config;
    C2fState *st = layer->state;
    const Tensor *x = layer->in[0];
    int64_t n = x->shape.n, hw = shape_hw(x->shape), c = st->c, cat_c = (2 + cfg->n) * c;
    conv_block_forward(&st->cv1, be, x, train);
    st->second_half.shape = shape_make(n, c, x->shape.h, x->shape.w);
    st->cat.shape = shape_make(n, cat_c, x->shape.h, x->shape.w);
    backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = st->cv1.out.data, .src_c = 2 * c,
                                                  .dst = st->cat.data, .dst_c = cat_c, .count = 2 * c});
    backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = st->cv1.out.data, .src_c = 2 * c,
                                                  .src_c0 = c, .dst = st->second_half.data, .dst_c = c, .count = c});
    const Tensor *prev = &st->second_half;
    for (int64_t i = 0; i < cfg->n; i++) {
        bottleneck_block_forward(&st->m[i], be, prev, train);
        prev = &st->m[i].out;
        backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = prev->data, .src_c = c,
                                                      .dst = st->cat.data, .dst_c = cat_c, .dst_c0 = (2 + i) * c,
                                                      .count = c});
    }
    conv_block_forward(&st->cv2, be, &st->cat, train);
    layer->out.shape = st->cv2.out.shape;
}

static void c2f_backward(Layer *layer, Backend *be) {
    const C2fConfig *cfg = layer->config;
    C2fState *st = layer->state;
    const Tensor *x = layer->in[0];
    int64_t n = x->shape.n, hw = shape_hw(x->shape), c = st->c, cat_c = (2 + cfg->n) * c;
    size_t half_elems = (size_t)(n * c * hw);
    be->ops->zero(be, st->d_cat.data, backend_act_bytes(be, tensor_elems(&st->cat)));
    conv_block_backward(&st->cv2, be, &st->cat, layer->dout.data, st->d_cat.data);
    // Each bottleneck's output feeds the concat and the next bottleneck: start from the concat's share.
    for (int64_t i = 0; i < cfg->n; i++)
        backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = st->d_cat.data, .src_c = cat_c,
                                                      .src_c0 = (2 + i) * c, .dst = st->d_m[i].data, .dst_c = c,
                                                      .count = c});
    be->ops->zero(be, st->d_second_half.data, backend_act_bytes(be, (int64_t)half_elems));
    for (int64_t i = cfg->n - 1; i >= 0; i--) {
        const Tensor *in = i ? &st->m[i - 1].out : &st->second_half;
        void *d_in = i ? st->d_m[i - 1].data : st->d_second_half.data;
        bottleneck_block_backward(&st->m[i], be, in, st->d_m[i].data, d_in);
    }
    backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = st->d_cat.data, .src_c = cat_c,
                                                  .dst = st->d_cv1.data, .dst_c = 2 * c, .count = 2 * c});
    backend_copy_channels(be, &(CopyChannelsArgs){.n = n, .hw = hw, .src = st->d_second_half.data, .src_c = c,
                                                  .dst = st->d_cv1.data, .dst_c = 2 * c, .dst_c0 = c, .count = c,
                                                  .accumulate = true});
    conv_block_backward(&st->cv1, be, x, st->d_cv1.data, layer->din[0] ? layer->din[0]->data : NULL);
}

static void c2f_destroy_state(Layer *layer) {
    C2fState *st = layer->state;
    if (!st) return;
    free(st->m);
    free(st->d_m);
    free(st);
}

const LayerKindOps layer_kind_c2f = {
    .name = "C2f", .parse = c2f_parse, .build = c2f_build, .forward = c2f_forward,
    .backward = c2f_backward, .destroy_state = c2f_destroy_state,
};
