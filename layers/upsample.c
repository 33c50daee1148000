// nn.Upsample(size=None, scale_factor=2, mode="nearest"): integer nearest-neighbour upsampling.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/module_args.h"

enum { UPSAMPLE_MAX_FACTOR = 1024 };  // keeps every shape product far inside int64_t

typedef struct UpsampleConfig {
    int64_t factor;
} UpsampleConfig;

static bool upsample_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    UpsampleConfig *cfg = layer->config = yp_calloc(1, sizeof *cfg);
    const ModelRow *row = layer->row;
    if (!module_require_inputs(layer, ctx, 1, err) || !module_require_single(layer, ctx, err) ||
        !module_args_count(layer, ctx, 2, 3, "[size=None, scale_factor, mode='nearest']", err))
        return false;
    if (row->args[0].kind != ARG_KIND_NONE)
        return model_spec_error_at(ctx->spec, row->args[0].node, err,
                                   "nn.Upsample size must be None (give the scale_factor instead), found '%s'",
                                   yaml_node_text(row->args[0].node));
    const Arg *factor = &row->args[1];
    // Range first: converting NaN or a value beyond int64_t to an integer is undefined.
    bool integral = (factor->kind == ARG_KIND_INT || factor->kind == ARG_KIND_FLOAT) && factor->f == floor(factor->f);
    if (!integral || !(factor->f >= 1 && factor->f <= UPSAMPLE_MAX_FACTOR))
        return model_spec_error_at(ctx->spec, factor->node, err,
                                   "nn.Upsample scale_factor must be a whole number from 1 to %d, found '%s'",
                                   UPSAMPLE_MAX_FACTOR, yaml_node_text(factor->node));
    cfg->factor = (int64_t)factor->f;
    if (row->n_args > 2 && (row->args[2].kind != ARG_KIND_STRING || strcmp(row->args[2].s, "nearest") != 0))
        return model_spec_error_at(ctx->spec, row->args[2].node, err,
                                   "nn.Upsample mode must be 'nearest', found '%s'", yaml_node_text(row->args[2].node));
    layer->c_out = ctx->c_in[0];
    module_set_args_text(layer, 0, NULL, 0);
    return true;
}

static bool upsample_build(Layer *layer, Builder *b, Error *err) {
    (void)err;
    const UpsampleConfig *cfg = layer->config;
    Shape in = layer->in[0]->shape;
    layer->out = builder_tensor(b, shape_make(in.n, in.c, in.h * cfg->factor, in.w * cfg->factor));
    builder_count_leaves(b, 1);
    return true;
}

static void upsample_forward(Layer *layer, Backend *be, bool train) {
    (void)train;
    const UpsampleConfig *cfg = layer->config;
    Shape s = layer->in[0]->shape;
    layer->out.shape = shape_make(s.n, s.c, s.h * cfg->factor, s.w * cfg->factor);
    be->ops->upsample_nearest_forward(be, s.n, s.c, s.h, s.w, cfg->factor, layer->in[0]->data, layer->out.data);
}

static void upsample_backward(Layer *layer, Backend *be) {
    if (!layer->din[0]) return;
    const UpsampleConfig *cfg = layer->config;
    Shape s = layer->in[0]->shape;
    be->ops->upsample_nearest_backward(be, s.n, s.c, s.h, s.w, cfg->factor, layer->dout.data, layer->din[0]->data);
}

static void upsample_destroy_state(Layer *layer) { (void)layer; }

const LayerKindOps layer_kind_upsample = {
    .name = "nn.Upsample", .parse = upsample_parse, .build = upsample_build, .forward = upsample_forward,
    .backward = upsample_backward, .destroy_state = upsample_destroy_state,
};
