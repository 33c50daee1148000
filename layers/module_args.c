#include "layers/module_args.h"

#include <math.h>

static const char *arg_kind_name(ArgKind kind) {
    static const char *const names[ARG_KIND_COUNT] = {"None", "a boolean", "an integer", "a number", "a string", "a list"};
    _Static_assert(sizeof names / sizeof *names == ARG_KIND_COUNT, "one name per ArgKind");
    return names[kind];
}

bool module_args_count(const Layer *layer, const ParseContext *ctx, int min, int max, const char *signature,
                       Error *err) {
    const ModelRow *row = layer->row;
    if (row->n_args >= min && row->n_args <= max) return true;
    if (min == max)
        return model_spec_error_at(ctx->spec, row->args_node, err, "%s takes %d argument%s %s, found %d", row->module,
                                   min, min == 1 ? "" : "s", signature, row->n_args);
    return model_spec_error_at(ctx->spec, row->args_node, err, "%s takes %d to %d arguments %s, found %d", row->module,
                               min, max, signature, row->n_args);
}

static bool wrong_type(const Layer *layer, const ParseContext *ctx, const Arg *a, const char *name, const char *want,
                       Error *err) {
    return model_spec_error_at(ctx->spec, a->node, err, "%s argument '%s' must be %s, found %s '%s'",
                               layer->row->module, name, want, arg_kind_name(a->kind), yaml_node_text(a->node));
}

bool module_arg_int(const Layer *layer, const ParseContext *ctx, int k, const char *name, int64_t fallback,
                    int64_t min, int64_t *out, Error *err) {
    if (k >= layer->row->n_args) return *out = fallback, true;
    const Arg *a = &layer->row->args[k];
    if (a->kind != ARG_KIND_INT) return wrong_type(layer, ctx, a, name, "an integer", err);
    if (a->i < min)
        return model_spec_error_at(ctx->spec, a->node, err, "%s argument '%s' must be at least %lld, found %lld",
                                   layer->row->module, name, (long long)min, (long long)a->i);
    // Channels, kernels, strides and groups beyond this are typos, and would overflow shape arithmetic.
    if (a->i > MODULE_ARG_INT_MAX)
        return model_spec_error_at(ctx->spec, a->node, err, "%s argument '%s' must be at most %d, found %lld",
                                   layer->row->module, name, MODULE_ARG_INT_MAX, (long long)a->i);
    *out = a->i;
    return true;
}

bool module_arg_int_or_none(const Layer *layer, const ParseContext *ctx, int k, const char *name, int64_t min,
                            int64_t *out, Error *err) {
    if (k >= layer->row->n_args || layer->row->args[k].kind == ARG_KIND_NONE) return *out = -1, true;
    const Arg *a = &layer->row->args[k];
    if (a->kind != ARG_KIND_INT) return wrong_type(layer, ctx, a, name, "an integer or None", err);
    return module_arg_int(layer, ctx, k, name, -1, min, out, err);
}

bool module_arg_int_list(const Layer *layer, const ParseContext *ctx, int k, const char *name, int min_len, int max_len,
                         int64_t min, int64_t *out, int *n_out, Error *err) {
    const Arg *a = &layer->row->args[k];
    YP_CHECK(k < layer->row->n_args && max_len <= MODEL_MAX_LIST);
    if (a->kind != ARG_KIND_LIST || !a->list_ints || a->n_list < min_len || a->n_list > max_len)
        return model_spec_error_at(ctx->spec, a->node, err, "%s argument '%s' must be a list of %d to %d integers, found '%s'",
                                   layer->row->module, name, min_len, max_len,
                                   a->kind == ARG_KIND_LIST ? "a list" : yaml_node_text(a->node));
    for (int j = 0; j < a->n_list; j++) {
        if (a->list[j] < min || a->list[j] > MODULE_ARG_INT_MAX)
            return model_spec_error_at(ctx->spec, yaml_seq_at(ctx->spec->yaml, a->node, j), err,
                                       "%s argument '%s' items must be %lld to %d, found %lld", layer->row->module, name,
                                       (long long)min, MODULE_ARG_INT_MAX, (long long)a->list[j]);
        out[j] = a->list[j];
    }
    *n_out = a->n_list;
    return true;
}

bool module_arg_bool(const Layer *layer, const ParseContext *ctx, int k, const char *name, bool fallback, bool *out,
                     Error *err) {
    if (k >= layer->row->n_args) return *out = fallback, true;
    const Arg *a = &layer->row->args[k];
    if (a->kind != ARG_KIND_BOOL) return wrong_type(layer, ctx, a, name, "True or False", err);
    *out = a->b;
    return true;
}

bool module_arg_number(const Layer *layer, const ParseContext *ctx, int k, const char *name, double fallback,
                       double *out, Error *err) {
    if (k >= layer->row->n_args) return *out = fallback, true;
    const Arg *a = &layer->row->args[k];
    if (a->kind != ARG_KIND_INT && a->kind != ARG_KIND_FLOAT) return wrong_type(layer, ctx, a, name, "a number", err);
    if (!(a->f > 0) || isinf(a->f))
        return model_spec_error_at(ctx->spec, a->node, err, "%s argument '%s' must be a positive number, found %g",
                                   layer->row->module, name, a->f);
    *out = a->f;
    return true;
}

int64_t module_scale_channels(const ModelSpec *spec, int64_t c2) {
    double scaled = fmin((double)c2, spec->max_channels) * spec->width;
    return (int64_t)ceil(scaled / 8.0) * 8;
}

bool module_hidden_channels(const Layer *layer, const ParseContext *ctx, int64_t c2, double e, int64_t g,
                            int64_t *out, Error *err) {
    const double max_hidden = (double)(1 << 30), c = (double)c2 * e;
    if (!(c < max_hidden + 1))
        return model_spec_error_at(ctx->spec, layer->row->args_node, err,
                                   "%s hidden channels int(c2 * e) = %g must be at most %.0f", layer->row->module, floor(c),
                                   max_hidden);
    *out = (int64_t)c;
    if (*out < 1 || *out % g)
        return model_spec_error_at(ctx->spec, layer->row->args_node, err,
                                   "%s hidden channels int(c2 * e) = %lld must be positive and divisible by g = %lld",
                                   layer->row->module, (long long)*out, (long long)g);
    return true;
}

bool module_check_kernel_fits(const Layer *layer, Builder *b, Shape in, int64_t k, int64_t pad, int64_t dilation,
                              Error *err) {
    int64_t extent = dilation * (k - 1) + 1;
    if (in.h + 2 * pad >= extent && in.w + 2 * pad >= extent) return true;
    // A 1x1 kernel always fits, so here k > 1 and the row wrote its kernel argument.
    return model_spec_error_at(builder_spec(b), layer->row->args[1].node, err,
                               "%s kernel %lld does not fit its %lldx%lld input with padding %lld at image size %lld; "
                               "use a smaller kernel or more padding",
                               layer->row->module, (long long)k, (long long)in.h, (long long)in.w, (long long)pad,
                               (long long)builder_imgsz_h(b));
}

bool module_require_single(const Layer *layer, const ParseContext *ctx, Error *err) {
    if (layer->row->repeats_written == 1) return true;
    return model_spec_error_at(ctx->spec, layer->row->repeats_node, err, "%s cannot be repeated: repeats must be 1, found %lld",
                               layer->row->module, (long long)layer->row->repeats_written);
}

bool module_require_inputs(const Layer *layer, const ParseContext *ctx, int n, Error *err) {
    if (layer->n_in == n) return true;
    return model_spec_error_at(ctx->spec, layer->row->from_node, err, "%s takes %d input%s, found %d in 'from'",
                               layer->row->module, n, n == 1 ? "" : "s", layer->n_in);
}

void module_set_args_text(Layer *layer, int n_values, const int64_t *values, int first_written) {
    char *text = layer->args_text;
    size_t cap = sizeof layer->args_text, used = 0;
    used += (size_t)snprintf(text, cap, "[");
    for (int k = 0; k < n_values && used < cap; k++)
        used += (size_t)snprintf(text + used, cap - used, "%s%lld", k ? ", " : "", (long long)values[k]);
    for (int k = first_written; k < layer->row->n_args && used < cap; k++) {
        const Arg *a = &layer->row->args[k];
        const char *sep = (k > first_written || n_values) ? ", " : "";
        switch (a->kind) {
        case ARG_KIND_NONE: used += (size_t)snprintf(text + used, cap - used, "%sNone", sep); break;
        case ARG_KIND_BOOL: used += (size_t)snprintf(text + used, cap - used, "%s%s", sep, a->b ? "True" : "False"); break;
        case ARG_KIND_INT: used += (size_t)snprintf(text + used, cap - used, "%s%lld", sep, (long long)a->i); break;
        case ARG_KIND_FLOAT: used += (size_t)snprintf(text + used, cap - used, "%s%g", sep, a->f); break;
        case ARG_KIND_STRING: used += (size_t)snprintf(text + used, cap - used, "%s'%s'", sep, a->s); break;
        case ARG_KIND_LIST:
            used += (size_t)snprintf(text + used, cap - used, "%s[", sep);
            for (int j = 0; j < a->n_list && used < cap; j++)
                used += (size_t)snprintf(text + used, cap - used, "%s%lld", j ? ", " : "", (long long)a->list[j]);
            if (used < cap) used += (size_t)snprintf(text + used, cap - used, "]");
            break;
        case ARG_KIND_COUNT: break;
        }
    }
    if (used < cap) snprintf(text + used, cap - used, "]");
}
