// Detect: the anchor-free head (YOLOv8 layout, also used by the v3u/v5u models). Per input level:
// a box branch Conv3x3(c2) -> Conv3x3(c2) -> Conv2d1x1(4 * reg_max) and a class branch
// Conv3x3(c3) -> Conv3x3(c3) -> Conv2d1x1(nc); plus DFL's fixed projection (used when decoding).
// Output (training layout): (N, 4 * reg_max + nc, A, 1), A = sum of H * W over levels, box logits in
// the first 4 * reg_max channels, class logits after them; anchors level by level, row-major.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "layers/blocks.h"
#include "layers/module_args.h"

enum { DETECT_BRANCH_DEPTH = 3 };

typedef struct DetectConfig {
    int64_t nc, reg_max, c2, c3;
} DetectConfig;

typedef struct DetectLevel {
    BlockChain box, cls;  // cv2[i], cv3[i]
    int64_t anchor0;      // first anchor of this level in the output
    Tensor d_box, d_cls;  // gradients of the branch outputs
} DetectLevel;

typedef struct DetectState {
    int n_levels;
    DetectLevel levels[MODEL_MAX_FROM];
    ConvBlock dfl;
    int64_t n_anchors;
} DetectState;

static bool detect_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    DetectConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    if (!module_require_single(layer, ctx, err) || !module_args_count(layer, ctx, 1, 1, "[nc]", err) ||
        !module_arg_int(layer, ctx, 0, "nc", 0, 1, &cfg->nc, err))
        return false;
    cfg->reg_max = ctx->spec->reg_max;
    int64_t ch0 = ctx->c_in[0];
    cfg->c2 = ch0 / 4 > 16 ? ch0 / 4 : 16;
    if (4 * cfg->reg_max > cfg->c2) cfg->c2 = 4 * cfg->reg_max;
    cfg->c3 = ch0 > (cfg->nc < 100 ? cfg->nc : 100) ? ch0 : (cfg->nc < 100 ? cfg->nc : 100);
    layer->c_out = 4 * cfg->reg_max + cfg->nc;
    int used = snprintf(layer->args_text, sizeof layer->args_text, "[%lld, %lld, [", (long long)cfg->nc,
                        (long long)cfg->reg_max);
    for (int k = 0; k < layer->n_in && used < (int)sizeof layer->args_text; k++)
        used += snprintf(layer->args_text + used, sizeof layer->args_text - (size_t)used, "%s%lld", k ? ", " : "",
                         (long long)ctx->c_in[k]);
    if (used < (int)sizeof layer->args_text) snprintf(layer->args_text + used, sizeof layer->args_text - (size_t)used, "]]");
    return true;
}

static void build_branch(BlockChain *chain, Builder *b, const char *name, int level, Shape in, int64_t hidden,
                         int64_t c_out) {
    block_chain_init(chain, BLOCK_KIND_CONV, DETECT_BRANCH_DEPTH);
    builder_push(b, "%s.%d", name, level);
    for (int j = 0; j < DETECT_BRANCH_DEPTH; j++) {
        builder_push(b, "%d", j);
        if (j + 1 < DETECT_BRANCH_DEPTH)
            conv_block_build(&chain->convs[j], b,
                             &(ConvBlockSpec){.in = in, .c_out = hidden, .k = 3, .pad = CONV_PAD_AUTO, .act = true});
        else
            conv2d_block_build(&chain->convs[j], b, in, c_out, 1, false);
        builder_pop(b);
        in = chain->convs[j].out.shape;
    }
    builder_pop(b);
    block_chain_finish(chain, b);
}

static bool detect_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const DetectConfig *cfg = layer->config;
    DetectState *st = layer->state = yp_calloc(1, sizeof *st);
    st->n_levels = layer->n_in;
    int64_t imgsz = builder_imgsz_h(b);
    // Declared in Ultralytics' order: every box branch (cv2), then every class branch (cv3), then dfl.
    for (int i = 0; i < st->n_levels; i++)
        build_branch(&st->levels[i].box, b, "cv2", i, layer->in[i]->shape, cfg->c2, 4 * cfg->reg_max);
    for (int i = 0; i < st->n_levels; i++)
        build_branch(&st->levels[i].cls, b, "cv3", i, layer->in[i]->shape, cfg->c3, cfg->nc);
    Shape first = layer->in[0]->shape;
    for (int i = 0; i < st->n_levels; i++) {
        DetectLevel *lv = &st->levels[i];
        Shape s = layer->in[i]->shape;
        lv->anchor0 = st->n_anchors;
        st->n_anchors += s.h * s.w;
        lv->d_box = builder_tensor(b, block_chain_out(&lv->box, DETECT_BRANCH_DEPTH - 1)->shape);
        lv->d_cls = builder_tensor(b, block_chain_out(&lv->cls, DETECT_BRANCH_DEPTH - 1)->shape);
        // Ultralytics' bias_init (8.4): box logits 2.0, class logits a prior of 5 objects per 640x640 image.
        int64_t stride = imgsz / s.h;
        builder_set_stride(b, i, stride);
        conv2d_block_set_bias(&lv->box.convs[DETECT_BRANCH_DEPTH - 1], b, 2.0f);
        double prior = log(5.0 / (double)cfg->nc / pow(640.0 / (double)stride, 2));
        conv2d_block_set_bias(&lv->cls.convs[DETECT_BRANCH_DEPTH - 1], b, (float)prior);
    }
    builder_push(b, "dfl.conv");
    conv2d_block_build(&st->dfl, b, shape_make(first.n, cfg->reg_max, 4, st->n_anchors), 1, 1, true);
    builder_pop(b);
    layer->out = builder_tensor(b, shape_make(first.n, layer->c_out, st->n_anchors, 1));
    return true;
}

static void detect_forward(Layer *layer, Backend *be, bool train) {
    const DetectConfig *cfg = layer->config;
    DetectState *st = layer->state;
    int64_t n = layer->in[0]->shape.n, a_total = 0, n_box = 4 * cfg->reg_max;
    for (int i = 0; i < st->n_levels; i++) a_total += shape_hw(layer->in[i]->shape);
    layer->out.shape = shape_make(n, layer->c_out, a_total, 1);
    int64_t a0 = 0;
    for (int i = 0; i < st->n_levels; i++) {
        DetectLevel *lv = &st->levels[i];
        int64_t hw = shape_hw(layer->in[i]->shape);
        block_chain_forward(&lv->box, be, layer->in[i], train);
        block_chain_forward(&lv->cls, be, layer->in[i], train);
        be->ops->copy_box(be, &(CopyBoxArgs){.n = n, .src = block_chain_out(&lv->box, DETECT_BRANCH_DEPTH - 1)->data,
                                             .src_c = n_box, .src_s = hw, .dst = layer->out.data, .dst_c = layer->c_out,
                                             .dst_s = a_total, .dst_s0 = a0, .count_c = n_box, .count_s = hw});
        be->ops->copy_box(be, &(CopyBoxArgs){.n = n, .src = block_chain_out(&lv->cls, DETECT_BRANCH_DEPTH - 1)->data,
                                             .src_c = cfg->nc, .src_s = hw, .dst = layer->out.data,
                                             .dst_c = layer->c_out, .dst_c0 = n_box, .dst_s = a_total, .dst_s0 = a0,
                                             .count_c = cfg->nc, .count_s = hw});
        a0 += hw;
    }
}

static void detect_backward(Layer *layer, Backend *be) {
    const DetectConfig *cfg = layer->config;
    DetectState *st = layer->state;
    int64_t n = layer->in[0]->shape.n, a_total = layer->out.shape.h, n_box = 4 * cfg->reg_max, a0 = 0;
    for (int i = 0; i < st->n_levels; i++) {
        DetectLevel *lv = &st->levels[i];
        int64_t hw = shape_hw(layer->in[i]->shape);
        be->ops->copy_box(be, &(CopyBoxArgs){.n = n, .src = layer->dout.data, .src_c = layer->c_out, .src_s = a_total,
                                             .src_s0 = a0, .dst = lv->d_box.data, .dst_c = n_box, .dst_s = hw,
                                             .count_c = n_box, .count_s = hw});
        be->ops->copy_box(be, &(CopyBoxArgs){.n = n, .src = layer->dout.data, .src_c = layer->c_out, .src_c0 = n_box,
                                             .src_s = a_total, .src_s0 = a0, .dst = lv->d_cls.data, .dst_c = cfg->nc,
                                             .dst_s = hw, .count_c = cfg->nc, .count_s = hw});
        void *dx = layer->din[i] ? layer->din[i]->data : NULL;
        block_chain_backward(&lv->box, be, layer->in[i], lv->d_box.data, dx);
        block_chain_backward(&lv->cls, be, layer->in[i], lv->d_cls.data, dx);
        a0 += hw;
    }
}

static void detect_destroy_state(Layer *layer) {
    DetectState *st = layer->state;
    if (!st) return;
    for (int i = 0; i < st->n_levels; i++) {
        block_chain_destroy(&st->levels[i].box);
        block_chain_destroy(&st->levels[i].cls);
    }
    free(st);
}

const LayerKindOps layer_kind_detect = {
    .name = "Detect", .parse = detect_parse, .build = detect_build, .forward = detect_forward,
    .backward = detect_backward, .destroy_state = detect_destroy_state,
};
