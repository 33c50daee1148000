// Attention, AAttn, PSABlock and the attention node of ModuleNet (layers/attention.h), and C2PSA:
// Ultralytics' C2PSA(c1, c2, n=1, e=0.5): a 1x1 Conv to 2c (c = int(c1 · e)) split in halves, n
// PSABlock(c, 0.5, max(c // 64, 1)) chained on the second half, both halves concatenated, a 1x1 Conv
// back to c1 (Ultralytics asserts c1 == c2). PSA(c1, c2, e=0.5) is C2PSA with one block, its attn and
// ffn named at the module's top level (b = b + attn(b); b = b + ffn(b)), and no repeats.
#include "layers/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/module_args.h"

AttentionSpec attention_spec_mhsa(int64_t dim, int64_t heads, double attn_ratio) {
    int64_t head_dim = heads > 0 ? dim / heads : 0;
    int64_t key_dim = (int64_t)((double)head_dim * attn_ratio);  // int(head_dim * attn_ratio)
    return (AttentionSpec){.heads = heads, .key_dim = key_dim, .head_dim = head_dim, .areas = 1, .pe_k = 3,
                           .scale = key_dim > 0 ? (float)pow((double)key_dim, -0.5) : 0.0f};
}

AttentionSpec attention_spec_area(int64_t dim, int64_t heads, int64_t area) {
    int64_t head_dim = heads > 0 ? dim / heads : 0;
    return (AttentionSpec){.heads = heads, .key_dim = head_dim, .head_dim = head_dim, .areas = area, .pe_k = 7,
                           .scale = head_dim > 0 ? (float)pow((double)head_dim, -0.5) : 0.0f};
}

bool attention_spec_check(const Layer *layer, const ParseContext *ctx, int64_t dim, const AttentionSpec *spec,
                          Error *err) {
    if (spec->heads < 1 || spec->head_dim < 1 || spec->key_dim < 1 || spec->areas < 1)
        return model_spec_error_at(ctx->spec, layer->row->args_node, err,
                                   "%s's attention over %lld channels with %lld heads would have an empty head "
                                   "(head_dim %lld, key_dim %lld); use more channels",
                                   layer->row->module, (long long)dim, (long long)spec->heads,
                                   (long long)spec->head_dim, (long long)spec->key_dim);
    // Attention views qkv as (B, heads, 2·key_dim + head_dim, N) and its output as (B, dim, H, W).
    if (spec->pe_k == 3 && spec->heads * spec->head_dim != dim)
        return model_spec_error_at(ctx->spec, layer->row->args_node, err,
                                   "%s's attention needs its %lld channels divisible by its %lld heads",
                                   layer->row->module, (long long)dim, (long long)spec->heads);
    return true;
}

bool attention_check_areas(const Layer *layer, Builder *b, Shape in, const AttentionSpec *spec, Error *err) {
    if ((in.h * in.w) % spec->areas == 0) return true;
    return model_spec_error_at(builder_spec(b), layer->row->args_node, err,
                               "%s's %lld areas do not divide the %lldx%lld positions of its input at image size "
                               "%lld; use an image size that does",
                               layer->row->module, (long long)spec->areas, (long long)in.h, (long long)in.w,
                               (long long)builder_imgsz_h(b));
}

// ---- the attention node: qkv (N, heads·stride, H, W) -> y (N, heads·head_dim, H, W) ----------------

typedef struct AttentionNodeState {
    AttentionArgs shape;  // everything but n, tokens and the pointers
    Tensor probs;         // (N, areas·heads, Na, Na) at the built size
} AttentionNodeState;

static AttentionArgs attention_node_args(const AttentionNodeState *st, Shape qkv) {
    AttentionArgs a = st->shape;
    a.n = qkv.n;
    a.tokens = qkv.h * qkv.w;
    a.probs = st->probs.data;
    return a;
}

static void attention_node_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    AttentionNodeState *st = node->state;
    Shape s = node->in[0]->shape;
    AttentionArgs a = attention_node_args(st, s);
    node->out->shape = shape_make(s.n, a.heads * a.head_dim, s.h, s.w);
    YP_CHECK(attention_probs_elems(&a) <= (size_t)st->probs.capacity);
    a.qkv = node->in[0]->data;
    a.y = node->out->data;
    be->ops->attention_forward(be, &a);
}

static void attention_node_backward(NetNode *node, Backend *be) {
    if (!node->din[0]) return;
    AttentionNodeState *st = node->state;
    AttentionArgs a = attention_node_args(st, node->in[0]->shape);
    a.qkv = node->in[0]->data;
    a.dy = node->dout->data;
    a.dqkv = node->din[0]->data;
    be->ops->attention_backward(be, &a);
}

static const NetNodeOps attention_node_ops = {.forward = attention_node_forward, .backward = attention_node_backward};

static NetValue net_attention_node(ModuleNet *net, Builder *b, NetValue qkv, const AttentionSpec *spec) {
    Shape s = module_net_shape(net, qkv);
    int64_t stride = 2 * spec->key_dim + spec->head_dim;
    YP_CHECK(s.c == spec->heads * stride && (s.h * s.w) % spec->areas == 0);
    AttentionNodeState *st = yp_calloc(1, sizeof *st);
    st->shape = (AttentionArgs){.n = s.n, .tokens = s.h * s.w, .areas = spec->areas, .heads = spec->heads,
                                .key_dim = spec->key_dim, .head_dim = spec->head_dim, .qkv_c = s.c,
                                .head_stride = stride, .q_c0 = 0, .k_c0 = spec->key_dim, .v_c0 = 2 * spec->key_dim,
                                .scale = spec->scale};
    int64_t na = s.h * s.w / spec->areas;
    st->probs = builder_tensor(b, shape_make(s.n, spec->areas * spec->heads, na, na));
    builder_attention_workspace(b, &st->shape);
    // The two products, heads·areas·Na²·(key_dim + head_dim) multiply-adds per image, are what thop's
    // matmul rule counts; the softmax (max, exp, sum, divide: about two multiply-adds per score) it
    // does not, so only the cost model sees it.
    double scores = (double)spec->heads * (double)spec->areas * (double)na * (double)na;
    builder_count_ops(b, scores * (double)(spec->key_dim + spec->head_dim));
    builder_count_uncounted_ops(b, 2.0 * scores);
    return module_net_add(net, b, &attention_node_ops, 1, &qkv, NULL,
                          shape_make(s.n, spec->heads * spec->head_dim, s.h, s.w), st);
}

// ---- v: every head's v channels of qkv, one after another (v.reshape(B, C, H, W)) ------------------

typedef struct HeadChannelsState {
    int64_t heads, stride, c0, count;  // head h's channels [h·stride + c0, h·stride + c0 + count)
} HeadChannelsState;

static void head_channels_forward(NetNode *node, Backend *be, bool train) {
    (void)train;
    const HeadChannelsState *st = node->state;
    Shape s = node->in[0]->shape;
    node->out->shape = shape_make(s.n, st->heads * st->count, s.h, s.w);
    for (int64_t h = 0; h < st->heads; h++)
        backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = shape_hw(s), .src = node->in[0]->data,
                                                      .src_c = s.c, .src_c0 = h * st->stride + st->c0,
                                                      .dst = node->out->data, .dst_c = st->heads * st->count,
                                                      .dst_c0 = h * st->count, .count = st->count});
}

static void head_channels_backward(NetNode *node, Backend *be) {
    const HeadChannelsState *st = node->state;
    Shape s = node->in[0]->shape;
    if (!node->din[0]) return;
    for (int64_t h = 0; h < st->heads; h++)
        backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = shape_hw(s), .src = node->dout->data,
                                                      .src_c = st->heads * st->count, .src_c0 = h * st->count,
                                                      .dst = node->din[0]->data, .dst_c = s.c,
                                                      .dst_c0 = h * st->stride + st->c0, .count = st->count,
                                                      .accumulate = true});
}

static const NetNodeOps head_channels_ops = {.forward = head_channels_forward, .backward = head_channels_backward};

static NetValue net_head_channels(ModuleNet *net, Builder *b, NetValue x, const HeadChannelsState *spec) {
    Shape s = module_net_shape(net, x);
    YP_CHECK(spec->heads * spec->stride <= s.c && spec->c0 + spec->count <= spec->stride);
    HeadChannelsState *st = yp_calloc(1, sizeof *st);
    *st = *spec;
    return module_net_add(net, b, &head_channels_ops, 1, &x, NULL, shape_make(s.n, st->heads * st->count, s.h, s.w),
                          st);
}

// ---- Attention and AAttn ---------------------------------------------------------------------------

NetValue net_attention(ModuleNet *net, Builder *b, const char *name, NetValue x, const AttentionSpec *spec) {
    Shape in = module_net_shape(net, x);
    int64_t stride = 2 * spec->key_dim + spec->head_dim, c = spec->heads * spec->head_dim;
    if (name) builder_push(b, "%s", name);
    NetValue qkv = net_conv(net, b, "qkv", x,
                            (ConvBlockSpec){.c_out = spec->heads * stride, .k = 1, .pad = CONV_PAD_AUTO});
    ConvBlock *proj = net_conv_ahead(net, b, "proj", shape_make(in.n, c, in.h, in.w),
                                     (ConvBlockSpec){.c_out = in.c, .k = 1, .pad = CONV_PAD_AUTO});
    NetValue v = net_head_channels(
        net, b, qkv,
        &(HeadChannelsState){.heads = spec->heads, .stride = stride, .c0 = 2 * spec->key_dim, .count = spec->head_dim});
    NetValue pe = net_conv(net, b, "pe", v,
                           (ConvBlockSpec){.c_out = c, .k = spec->pe_k, .pad = spec->pe_k / 2, .groups = c});
    NetValue y = net_attention_node(net, b, qkv, spec);
    NetValue out = net_conv_node(net, b, proj, net_add(net, b, y, pe));
    if (name) builder_pop(b);
    return out;
}

NetValue net_attention_ffn(ModuleNet *net, Builder *b, const char *name, NetValue x, int64_t hidden) {
    Shape in = module_net_shape(net, x);
    builder_push(b, "%s", name);
    NetValue h = net_conv(net, b, "0", x, (ConvBlockSpec){.c_out = hidden, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    NetValue y = net_conv(net, b, "1", h, (ConvBlockSpec){.c_out = in.c, .k = 1, .pad = CONV_PAD_AUTO});
    builder_pop(b);
    return y;
}

NetValue net_psa_block(ModuleNet *net, Builder *b, const char *name, NetValue x, const PsaBlockSpec *spec) {
    Shape in = module_net_shape(net, x);
    AttentionSpec attn = attention_spec_mhsa(in.c, spec->heads, spec->attn_ratio);
    if (name) builder_push(b, "%s", name);
    NetValue a = net_attention(net, b, "attn", x, &attn);
    if (spec->shortcut) a = net_add(net, b, x, a);
    NetValue f = net_attention_ffn(net, b, "ffn", a, 2 * in.c);
    if (spec->shortcut) f = net_add(net, b, a, f);
    if (name) builder_pop(b);
    return f;
}

// ---- C2PSA ---------------------------------------------------------------------------------------

typedef struct C2psaConfig {
    int64_t c1, c2, n, c;
    double e;
    bool psa;  // PSA: one block whose attn and ffn sit at the module's top level (no "m.<i>.")
} C2psaConfig;

// C2PSA and PSA share their constructor, (c1, c2, e=0.5) with c1 == c2; only C2PSA takes repeats.
static bool c2psa_parse_as(Layer *layer, const ParseContext *ctx, bool psa, Error *err) {
    C2psaConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    cfg->c1 = ctx->c_in[0];
    cfg->n = psa ? 1 : layer->row->repeats;
    cfg->psa = psa;
    if (!module_require_inputs(layer, ctx, 1, err) || (psa && !module_require_single(layer, ctx, err)) ||
        !module_args_count(layer, ctx, 1, 2, "[c2, e=0.5]", err) ||
        !module_arg_int(layer, ctx, 0, "c2", 0, 1, &cfg->c2, err) ||
        !module_arg_number(layer, ctx, 1, "e", 0.5, &cfg->e, err))
        return false;
    cfg->c2 = module_scale_channels(ctx->spec, cfg->c2);
    if (cfg->c1 != cfg->c2)  // Ultralytics asserts c1 == c2
        return model_spec_error_at(ctx->spec, layer->row->args[0].node, err,
                                   "%s keeps its channels: c2 scales to %lld but its input has %lld",
                                   layer->row->module, (long long)cfg->c2, (long long)cfg->c1);
    if (!module_hidden_channels(layer, ctx, cfg->c1, cfg->e, 1, &cfg->c, err)) return false;
    AttentionSpec attn = attention_spec_mhsa(cfg->c, attention_psa_heads(cfg->c), 0.5);
    if (!attention_spec_check(layer, ctx, cfg->c, &attn, err)) return false;
    layer->c_out = cfg->c2;
    if (psa)
        module_set_args_text(layer, 2, (int64_t[]){cfg->c1, cfg->c2}, 1);
    else
        module_set_args_text(layer, 3, (int64_t[]){cfg->c1, cfg->c2, cfg->n}, 1);
    return true;
}

static bool c2psa_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    return c2psa_parse_as(layer, ctx, false, err);
}

static bool psa_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    return c2psa_parse_as(layer, ctx, true, err);
}

static bool c2psa_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const C2psaConfig *cfg = layer->config;
    ModuleNet *net = module_net_begin(layer, b);
    Shape in = layer->in[0]->shape;
    int64_t c = cfg->c;
    ConvBlockSpec pointwise = {.c_out = 2 * c, .k = 1, .pad = CONV_PAD_AUTO, .act = true};
    NetValue cv1 = net_conv(net, b, "cv1", net_input(0), pointwise);
    ConvBlock *cv2 = net_conv_ahead(net, b, "cv2", shape_make(in.n, 2 * c, in.h, in.w),
                                    (ConvBlockSpec){.c_out = cfg->c1, .k = 1, .pad = CONV_PAD_AUTO, .act = true});
    NetValue a = net_channels(net, b, cv1, 0, c);
    NetValue y = net_channels(net, b, cv1, c, c);
    for (int64_t i = 0; i < cfg->n; i++) {
        if (!cfg->psa) builder_push(b, "m.%lld", (long long)i);
        y = net_psa_block(net, b, NULL, y,
                          &(PsaBlockSpec){.heads = attention_psa_heads(c), .attn_ratio = 0.5, .shortcut = true});
        if (!cfg->psa) builder_pop(b);
    }
    module_net_end(net, b, net_conv_node(net, b, cv2, net_concat(net, b, 2, (NetValue[]){a, y})));
    return true;
}

const LayerKindOps layer_kind_c2psa = {
    .name = "C2PSA", .parse = c2psa_parse, .build = c2psa_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};

const LayerKindOps layer_kind_psa = {
    .name = "PSA", .parse = psa_parse, .build = c2psa_build, .forward = module_net_layer_forward,
    .backward = module_net_layer_backward, .destroy_state = module_net_layer_destroy_state,
};
