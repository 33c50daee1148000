// Detect: the anchor-free head (YOLOv8 layout, also used by the v3u/v5u models and, with the light
// class branch, by YOLO10/11/12/26), and v10Detect. Per input level:
//   cv2[i], box:   Conv3x3(c2) -> Conv3x3(c2) -> Conv2d1x1(4 * reg_max)
//   cv3[i], class: legacy rows (ModelRow.legacy): Conv3x3(c3) -> Conv3x3(c3) -> Conv2d1x1(nc);
//                  otherwise, and always in v10Detect, the light branch
//                  (DWConv3x3(x) -> Conv1x1(c3)) -> (DWConv3x3(c3) -> Conv1x1(c3)) -> Conv2d1x1(nc)
// plus DFL's fixed projection (used when decoding; with reg_max 1 it is nn.Identity: the box
// channels are the four distances themselves). End-to-end heads (end2end: True, v10Detect) also
// declare one2one_cv2 / one2one_cv3, deep copies of cv2 / cv3 (issue 18 runs them: for now forward
// computes the one-to-many output only, and the trainer refuses these models).
// Output (training layout): (N, 4 * reg_max + nc, A, 1), A = sum of H * W over levels, box logits in
// the first 4 * reg_max channels, class logits after them; anchors level by level, row-major.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "layers/blocks.h"
#include "layers/module_args.h"

// v10Detect calls Detect's constructor without reg_max: the YAML's key does not reach it.
enum { DETECT_V10_REG_MAX = 16 };

typedef struct DetectConfig {
    int64_t nc, reg_max, c2, c3;
    bool light_cls;  // the DWConv class branch (non-legacy rows, v10Detect)
    bool end2end;    // one2one_cv2 / one2one_cv3 are declared
} DetectConfig;

typedef struct DetectLevel {
    BlockChain box, cls;                  // cv2[i], cv3[i]
    BlockChain one2one_box, one2one_cls;  // one2one_cv2[i], one2one_cv3[i] (end2end only; not run yet)
    int64_t anchor0;                      // first anchor of this level in the output
    Tensor d_box, d_cls;                  // gradients of the branch outputs
} DetectLevel;

typedef struct DetectState {
    int n_levels;
    DetectLevel levels[MODEL_MAX_FROM];
    ConvBlock dfl;
    int64_t n_anchors;
} DetectState;

// Ultralytics' channel rules, shared by Detect and v10Detect: c2 = max(16, ch[0] // 4, 4 * reg_max),
// c3 = max(ch[0], min(nc, 100)).
static bool detect_parse_common(Layer *layer, const ParseContext *ctx, DetectConfig *cfg, Error *err) {
    if (!module_require_single(layer, ctx, err) || !module_args_count(layer, ctx, 1, 1, "[nc]", err) ||
        !module_arg_int(layer, ctx, 0, "nc", 0, 1, &cfg->nc, err))
        return false;
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
    if (used < (int)sizeof layer->args_text)
        snprintf(layer->args_text + used, sizeof layer->args_text - (size_t)used, "]]");
    return true;
}

static bool detect_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    DetectConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    *cfg =
        (DetectConfig){.reg_max = ctx->spec->reg_max, .light_cls = !layer->row->legacy, .end2end = ctx->spec->end2end};
    return detect_parse_common(layer, ctx, cfg, err);
}

static bool v10detect_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    DetectConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    *cfg = (DetectConfig){.reg_max = DETECT_V10_REG_MAX, .light_cls = true, .end2end = true};
    return detect_parse_common(layer, ctx, cfg, err);
}

// The Convs of a branch before its final Conv2d, each named under the branch's prefix: to `hidden`
// channels or keeping its input's; a DWConv(c, c, 3) is Conv with groups gcd(c, c) = c.
typedef struct BranchStep {
    const char *name;
    bool to_hidden, depthwise;
    int64_t k;
} BranchStep;

enum { BRANCH_MAX_STEPS = 4 };
static const BranchStep conv_steps[BRANCH_MAX_STEPS] = {{"0", true, false, 3}, {"1", true, false, 3}};
// Sequential(Sequential(DWConv(x, x, 3), Conv(x, c3, 1)), Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)))
static const BranchStep light_steps[BRANCH_MAX_STEPS] = {
    {"0.0", false, true, 3}, {"0.1", true, false, 1}, {"1.0", false, true, 3}, {"1.1", true, false, 1}};

// One level's branch `name`.`level` (cv2.0, one2one_cv3.2, ...): its Convs, then nn.Conv2d(c_out, 1);
// light: the DWConv class branch.
static void build_branch(BlockChain *chain, Builder *b, const char *name, int level, Shape in, int64_t hidden,
                         int64_t c_out, bool light) {
    const BranchStep *steps = light ? light_steps : conv_steps;
    int n_steps = light ? 4 : 2;
    block_chain_init(chain, BLOCK_KIND_CONV, n_steps + 1);
    builder_push(b, "%s.%d", name, level);
    for (int j = 0; j < n_steps; j++) {
        const BranchStep *st = &steps[j];
        builder_push(b, "%s", st->name);
        conv_block_build(&chain->convs[j], b,
                         &(ConvBlockSpec){.in = in,
                                          .c_out = st->to_hidden ? hidden : in.c,
                                          .k = st->k,
                                          .pad = CONV_PAD_AUTO,
                                          .groups = st->depthwise ? in.c : 1,
                                          .act = true});
        builder_pop(b);
        in = chain->convs[j].out.shape;
    }
    builder_push(b, "2");  // the Sequential's third entry in both layouts
    conv2d_block_build(&chain->convs[n_steps], b, in, c_out, 1, false);
    builder_pop(b);
    builder_pop(b);
    block_chain_finish(chain, b);
}

static ConvBlock *branch_last(BlockChain *chain) { return &chain->convs[chain->n - 1]; }

// Ultralytics' bias_init (8.4), for the one-to-many and the one-to-one branches alike: box logits
// 2.0, class logits a prior of 5 objects per 640x640 image.
static void set_bias_priors(BlockChain *box, BlockChain *cls, Builder *b, int64_t nc, int64_t stride) {
    conv2d_block_set_bias(branch_last(box), b, 2.0f);
    conv2d_block_set_bias(branch_last(cls), b, (float)log(5.0 / (double)nc / pow(640.0 / (double)stride, 2)));
}

static bool detect_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const DetectConfig *cfg = layer->config;
    DetectState *st = layer->state = yp_calloc(1, sizeof *st);
    st->n_levels = layer->n_in;
    int64_t imgsz = builder_imgsz_h(b);
    // Declared in Ultralytics' order: every box branch (cv2), every class branch (cv3), dfl, then
    // (end2end) every one2one_cv2 and every one2one_cv3.
    for (int i = 0; i < st->n_levels; i++)
        build_branch(&st->levels[i].box, b, "cv2", i, layer->in[i]->shape, cfg->c2, 4 * cfg->reg_max, false);
    for (int i = 0; i < st->n_levels; i++)
        build_branch(&st->levels[i].cls, b, "cv3", i, layer->in[i]->shape, cfg->c3, cfg->nc, cfg->light_cls);
    Shape first = layer->in[0]->shape;
    for (int i = 0; i < st->n_levels; i++) {
        DetectLevel *lv = &st->levels[i];
        Shape s = layer->in[i]->shape;
        lv->anchor0 = st->n_anchors;
        st->n_anchors += s.h * s.w;
        lv->d_box = builder_tensor(b, branch_last(&lv->box)->out.shape);
        lv->d_cls = builder_tensor(b, branch_last(&lv->cls)->out.shape);
        builder_set_stride(b, i, imgsz / s.h);
        set_bias_priors(&lv->box, &lv->cls, b, cfg->nc, imgsz / s.h);
    }
    builder_set_reg_max(b, cfg->reg_max);
    if (cfg->reg_max > 1) {
        builder_push(b, "dfl.conv");
        conv2d_block_build(&st->dfl, b, shape_make(first.n, cfg->reg_max, 4, st->n_anchors), 1, 1, true);
        builder_pop(b);
    } else {
        builder_count_leaves(b, 1);  // nn.Identity
    }
    if (cfg->end2end) {
        // copy.deepcopy of cv2 / cv3 after their initialisation; bias_init then sets the same priors.
        // Each deep copy has its own copy of the shared activation module: one more leaf per list.
        builder_count_leaves(b, 2);
        for (int i = 0; i < st->n_levels; i++) {
            DetectLevel *lv = &st->levels[i];
            build_branch(&lv->one2one_box, b, "one2one_cv2", i, layer->in[i]->shape, cfg->c2, 4 * cfg->reg_max, false);
            block_chain_copy_params(&lv->one2one_box, &lv->box, b);
        }
        for (int i = 0; i < st->n_levels; i++) {
            DetectLevel *lv = &st->levels[i];
            build_branch(&lv->one2one_cls, b, "one2one_cv3", i, layer->in[i]->shape, cfg->c3, cfg->nc, cfg->light_cls);
            block_chain_copy_params(&lv->one2one_cls, &lv->cls, b);
        }
    }
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
        be->ops->copy_box(be, &(CopyBoxArgs){.n = n, .src = branch_last(&lv->box)->out.data,
                                             .src_c = n_box, .src_s = hw, .dst = layer->out.data, .dst_c = layer->c_out,
                                             .dst_s = a_total, .dst_s0 = a0, .count_c = n_box, .count_s = hw});
        be->ops->copy_box(be, &(CopyBoxArgs){.n = n, .src = branch_last(&lv->cls)->out.data,
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
        block_chain_destroy(&st->levels[i].one2one_box);
        block_chain_destroy(&st->levels[i].one2one_cls);
    }
    free(st);
}

const LayerKindOps layer_kind_detect = {
    .name = "Detect", .parse = detect_parse, .build = detect_build, .forward = detect_forward,
    .backward = detect_backward, .destroy_state = detect_destroy_state, .detect_head = true,
};

const LayerKindOps layer_kind_v10detect = {
    .name = "v10Detect", .parse = v10detect_parse, .build = detect_build, .forward = detect_forward,
    .backward = detect_backward, .destroy_state = detect_destroy_state, .detect_head = true,
};
