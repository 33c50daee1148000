// Concat(dimension=1): channel concatenation of several earlier layers of the same spatial size.
#include <stdlib.h>

#include "layers/module_args.h"

static bool concat_parse(Layer *layer, const ParseContext *ctx, Error *err) {
    int64_t dim = 1;
    if (!module_require_single(layer, ctx, err) || !module_args_count(layer, ctx, 0, 1, "[dimension=1]", err) ||
        !module_arg_int(layer, ctx, 0, "dimension", 1, 0, &dim, err))
        return false;
    if (dim != 1)
        return model_spec_error_at(ctx->spec, layer->row->args[0].node, err,
                                   "Concat supports dimension 1 (channels) only, found %lld", (long long)dim);
    layer->c_out = 0;
    for (int k = 0; k < layer->n_in; k++) layer->c_out += ctx->c_in[k];
    module_set_args_text(layer, 0, NULL, 0);
    return true;
}

static bool concat_build(Layer *layer, Builder *b, Error *err) {
    const ModelSpec *spec = builder_spec(b);
    Shape first = layer->in[0]->shape;
    for (int k = 1; k < layer->n_in; k++) {
        Shape s = layer->in[k]->shape;
        if (s.h != first.h || s.w != first.w)
            return model_spec_error_at(
                spec, layer->row->from_is_list ? yaml_seq_at(spec->yaml, layer->row->from_node, k) : layer->row->from_node,
                err, "Concat inputs must have the same size: layer %d gives %lldx%lld but layer %d gives %lldx%lld at image size %lld",
                layer->in_index[0], (long long)first.h, (long long)first.w, layer->in_index[k], (long long)s.h,
                (long long)s.w, (long long)builder_imgsz_h(b));
    }
    layer->out = builder_tensor(b, shape_make(first.n, layer->c_out, first.h, first.w));
    builder_count_leaves(b, 1);
    return true;
}

static void concat_forward(Layer *layer, Backend *be, bool train) {
    (void)train;
    Shape s = layer->in[0]->shape;
    layer->out.shape = shape_make(s.n, layer->c_out, s.h, s.w);
    int64_t c0 = 0;
    for (int k = 0; k < layer->n_in; k++) {
        const Tensor *x = layer->in[k];
        backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = shape_hw(s), .src = x->data, .src_c = x->shape.c,
                                                      .dst = layer->out.data, .dst_c = layer->c_out, .dst_c0 = c0,
                                                      .count = x->shape.c});
        c0 += x->shape.c;
    }
}

static void concat_backward(Layer *layer, Backend *be) {
    Shape s = layer->out.shape;
    int64_t c0 = 0;
    for (int k = 0; k < layer->n_in; k++) {
        const Tensor *x = layer->in[k];
        if (layer->din[k])
            backend_copy_channels(be, &(CopyChannelsArgs){.n = s.n, .hw = shape_hw(s), .src = layer->dout.data,
                                                          .src_c = layer->c_out, .src_c0 = c0,
                                                          .dst = layer->din[k]->data, .dst_c = x->shape.c,
                                                          .count = x->shape.c, .accumulate = true});
        c0 += x->shape.c;
    }
}

static void concat_destroy_state(Layer *layer) { (void)layer; }

const LayerKindOps layer_kind_concat = {
    .name = "Concat", .parse = concat_parse, .build = concat_build, .forward = concat_forward,
    .backward = concat_backward, .destroy_state = concat_destroy_state,
};
