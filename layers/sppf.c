// SPPF: Ultralytics' SPPF(c1, c2, k=5, n=3, shortcut=False): a 1x1 Conv to c1 / 2, n chained
// k x k max-pools (stride 1, same size), concat of the n + 1 maps, a 1x1 Conv to c2, and the input
// added back when shortcut and c1 == c2. The first Conv has no activation (YOLO26), except in legacy
// rows that give at most [c2, k] (YOLOv5/v8), where Ultralytics restores its SiLU.
#include <stdlib.h>

#include "layers/blocks.h"
#include "layers/module_args.h"

typedef struct SppfConfig {
    int64_t c1, c2, k, n;
    bool shortcut;
    bool cv1_act;  // legacy rows: cv1 keeps SiLU
} SppfConfig;

typedef struct SppfState {
    int64_t c;               // c1 / 2
    ConvBlock cv1, cv2;
    bool add;
    Tensor *pooled;          // n pooled maps (N, c, H, W)
    Tensor *d_pooled;        // gradient of pooled[j]; d_pooled[-1] is cv1's, kept in d_cv1
    Tensor d_cv1, cat, d_cat, out;
} SppfState;

static bool sppf_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    SppfConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 1, 4, "[c2, k=5, n=3, shortcut=False]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_int(layer, ctx, 1, "k", 5, 1, &cfg->k, err) ||
        !module_arg_int(layer, ctx, 2, "n", 3, 1, &cfg->n, err) ||
        !module_arg_bool(layer, ctx, 3, "shortcut", false, &cfg->shortcut, err))
        return false;
    if (cfg->k % 2 == 0)
        return model_spec_error_at(ctx->spec, layer->row->args[1].node, err,
                                   "SPPF kernel k must be odd to keep the size, found %lld", (long long)cfg->k);
    if (cfg->c1 < 2)
        return model_spec_error_at(ctx->spec, layer->row->from_node, err, "SPPF needs at least 2 input channels");
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    cfg->cv1_act = layer->row->n_args <= 2;
    layer->c_out = cfg->c2;
    module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    return true;
}

static bool sppf_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const SppfConfig *cfg = layer->config;
    SppfState *st = layer->state = yp_calloc(1, sizeof *st);
    Shape in = layer->in[0]->shape;
    int64_t c = st->c = cfg->c1 / 2;
    builder_push(b, "cv1");
    conv_block_build(&st->cv1, b,
                     &(ConvBlockSpec){.in = in, .c_out = c, .k = 1, .pad = CONV_PAD_AUTO, .act = cfg->cv1_act});
    builder_pop(b);
    Shape cat = shape_make(in.n, c * (cfg->n + 1), in.h, in.w);
    builder_push(b, "cv2");
    conv_block_build(&st->cv2, b,
                     &(ConvBlockSpec){.in = cat, .c_out = cfg->c2, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    builder_pop(b);
    builder_count_leaves(b, 1);  // one nn.MaxPool2d applied n times
    Shape hidden = st->cv1.out.shape;
    st->pooled = yp_calloc((size_t)cfg->n, sizeof *st->pooled);
    st->d_pooled = yp_calloc((size_t)cfg->n, sizeof *st->d_pooled);
    for (int64_t j = 0; j < cfg->n; j++) {
        st->pooled[j] = builder_tensor(b, hidden);
        st->d_pooled[j] = builder_tensor(b, hidden);
    }
    st->d_cv1 = builder_tensor(b, hidden);
    st->cat = builder_tensor(b, cat);
    st->d_cat = builder_tensor(b, cat);
    st->add = cfg->shortcut && cfg->c1 == cfg->c2;
    st->out = st->add ? builder_tensor(b, st->cv2.out.shape) : st->cv2.out;
    layer->out = st->out;
    return true;
}

// SPPF's shape-keeping pool nn.MaxPool2d(k, stride=1, padding=k // 2) over c channels of shape s.
static Pool2dArgs sppf_pool_args(Shape s, int64_t c, int64_t k) {
    return pool2d_args_out(&(Pool2dArgs){.n = s.n, .c = c, .h = s.h, .w = s.w, .k = k, .stride = 1, .pad = k / 2});
}

static void sppf_forward(Layer *layer, Backend *be, bool train) {
    const SppfConfig *cfg = layer->config;
    SppfState *st = layer->state;
    const Tensor *x = layer->in[0];
    Shape s = x->shape;
    int64_t c = st->c, cat_c = c * (cfg->n + 1), hw = shape_hw(s);
    conv_block_forward(&st->cv1, be, x, train);
    st->cat.shape = shape_make(s.n, cat_c, s.h, s.w);
    backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = hw, .src = st->cv1.out.data, .src_c = c,
                                                  .dst = st->cat.data, .dst_c = cat_c, .count = c});
    const Tensor *prev = &st->cv1.out;
    for (int64_t j = 0; j < cfg->n; j++) {
        st->pooled[j].shape = prev->shape;
        Pool2dArgs pool = sppf_pool_args(s, c, cfg->k);
        pool.x = prev->data;
        pool.y = st->pooled[j].data;
        be->ops->maxpool2d_forward(be, &pool);
        backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = hw, .src = st->pooled[j].data, .src_c = c,
                                                      .dst = st->cat.data, .dst_c = cat_c, .dst_c0 = (j + 1) * c,
                                                      .count = c});
        prev = &st->pooled[j];
    }
    conv_block_forward(&st->cv2, be, &st->cat, train);
    st->out.shape = layer->out.shape = st->cv2.out.shape;
    if (st->add) be->ops->add(be, x->data, st->cv2.out.data, st->out.data, (size_t)tensor_elems(&st->out));
}

static void sppf_backward(Layer *layer, Backend *be) {
    const SppfConfig *cfg = layer->config;
    SppfState *st = layer->state;
    const Tensor *x = layer->in[0];
    Shape s = x->shape;
    int64_t c = st->c, cat_c = c * (cfg->n + 1), hw = shape_hw(s);
    void *dx = layer->din[0] ? layer->din[0]->data : NULL;
    be->ops->zero(be, st->d_cat.data, backend_act_bytes(be, tensor_elems(&st->cat)));
    conv_block_backward(&st->cv2, be, &st->cat, layer->dout.data, st->d_cat.data);
    // pooled[j] feeds the concat and pooled[j + 1]; walk the chain backwards.
    for (int64_t j = cfg->n - 1; j >= -1; j--) {
        Tensor *d = j >= 0 ? &st->d_pooled[j] : &st->d_cv1;
        backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = hw, .src = st->d_cat.data, .src_c = cat_c,
                                                      .src_c0 = (j + 1) * c, .dst = d->data, .dst_c = c, .count = c});
        if (j + 1 < cfg->n) {
            const Tensor *pool_in = j >= 0 ? &st->pooled[j] : &st->cv1.out;
            Pool2dArgs pool = sppf_pool_args(s, c, cfg->k);
            pool.x = pool_in->data;
            pool.dy = st->d_pooled[j + 1].data;
            pool.dx = d->data;
            be->ops->maxpool2d_backward(be, &pool);
        }
    }
    conv_block_backward(&st->cv1, be, x, st->d_cv1.data, dx);
    if (st->add && dx) be->ops->accumulate(be, layer->dout.data, dx, (size_t)tensor_elems(&st->out));
}

static void sppf_destroy_state(Layer *layer) {
    SppfState *st = layer->state;
    if (!st) return;
    free(st->pooled);
    free(st->d_pooled);
    free(st);
}

const LayerKindOps layer_kind_sppf = {
    .name = "SPPF", .parse = sppf_parse, .build = sppf_build, .forward = sppf_forward,
    .backward = sppf_backward, .destroy_state = sppf_destroy_state,
};
