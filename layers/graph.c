#include "layers/graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/rng.h"

enum { BUILDER_MAX_DEPTH = 16 };

struct Builder {
    Graph *g;
    Layer *layer;
    Backend *be;             // NULL while describing
    uint64_t seed;
    char prefix[PARAM_NAME_MAX];
    size_t prefix_len[BUILDER_MAX_DEPTH];
    int depth;
    int param_cursor;        // with memory: the next ParamInfo to bind
    bool shared_activation_counted;
};

Backend *builder_backend(const Builder *b) { return b->be; }
Layer *builder_layer(const Builder *b) { return b->layer; }
const ModelSpec *builder_spec(const Builder *b) { return b->g->spec; }
BatchNormSettings builder_batchnorm_settings(const Builder *b) { return b->g->batchnorm; }
int64_t builder_imgsz_h(const Builder *b) { return b->g->input.shape.h; }

void builder_push(Builder *b, const char *fmt, ...) {
    YP_CHECK(b->depth < BUILDER_MAX_DEPTH);
    size_t len = strlen(b->prefix);
    b->prefix_len[b->depth++] = len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->prefix + len, sizeof b->prefix - len, fmt, ap);
    va_end(ap);
    YP_CHECK(n >= 0 && len + (size_t)n + 1 < sizeof b->prefix);
    strcat(b->prefix, ".");
}

void builder_pop(Builder *b) {
    YP_CHECK(b->depth > 0);
    b->prefix[b->prefix_len[--b->depth]] = '\0';
}

static void param_initialise(Backend *be, const ParamInfo *p, float *dst, uint64_t seed) {
    switch (p->init.kind) {
    case PARAM_INIT_FAN_IN_UNIFORM: {
        float bound = (float)(1.0 / sqrt((double)p->init.fan_in));
        be->ops->fill_uniform(be, dst, (size_t)p->n_elems, -bound, bound, rng_seed_for_name(seed, p->name));
        break;
    }
    case PARAM_INIT_CONST: be->ops->fill(be, dst, (float)p->init.value, (size_t)p->n_elems); break;
    case PARAM_INIT_ARANGE: {
        float *host = yp_malloc((size_t)p->n_elems * sizeof *host);
        for (int64_t i = 0; i < p->n_elems; i++) host[i] = (float)i;
        be->ops->upload(be, dst, host, (size_t)p->n_elems);
        free(host);
        break;
    }
    case PARAM_INIT_KIND_COUNT: yp_fatal("bad init kind");
    }
}

Param builder_param(Builder *b, const char *name, int ndim, const int64_t *dims, unsigned flags, ParamInit init) {
    Graph *g = b->g;
    char full[PARAM_NAME_MAX];
    int n = snprintf(full, sizeof full, "%s%s", b->prefix, name);
    YP_CHECK(n > 0 && (size_t)n < sizeof full && ndim <= PARAM_MAX_DIMS);
    if (!b->be) {  // describing: append to the table
        g->params = yp_realloc(g->params, (size_t)(g->n_params + 1) * sizeof *g->params);
        ParamInfo *p = &g->params[g->n_params++];
        *p = (ParamInfo){.ndim = ndim, .n_elems = 1, .flags = flags, .layer = b->layer->index, .init = init};
        memcpy(p->name, full, (size_t)n + 1);
        for (int d = 0; d < ndim; d++) p->n_elems *= (p->dims[d] = dims[d]);
        if (flags & PARAM_BUFFER) {
            p->offset = g->buffer_elems;
            g->buffer_elems += p->n_elems;
        } else {
            p->offset = g->param_elems;
            g->param_elems += p->n_elems;
            b->layer->n_params += p->n_elems;
            if (!(flags & PARAM_NO_GRAD)) b->layer->n_grads += p->n_elems, g->grad_elems += p->n_elems;
        }
        return (Param){.n_elems = p->n_elems};
    }
    // With memory: bind the entry the describing pass made, in the same order.
    YP_CHECK(b->param_cursor < g->n_params);
    const ParamInfo *p = &g->params[b->param_cursor++];
    YP_CHECK(strcmp(p->name, full) == 0);
    Param param = {.n_elems = p->n_elems};
    if (p->flags & PARAM_BUFFER) {
        param.value = g->buffer_data + p->offset;
    } else {
        param.value = g->param_data + p->offset;
        if (!(p->flags & PARAM_NO_GRAD)) param.grad = g->grad_data + p->offset;
    }
    param_initialise(b->be, p, param.value, b->seed);
    return param;
}

static float *graph_alloc(Graph *g, int64_t n_elems) {
    g->allocs = yp_realloc(g->allocs, (size_t)(g->n_allocs + 1) * sizeof *g->allocs);
    float *p = g->be->ops->alloc(g->be, (size_t)n_elems * sizeof(float));
    g->allocs[g->n_allocs++] = p;
    g->allocated_bytes += n_elems * (int64_t)sizeof(float);
    return p;
}

Tensor builder_tensor(Builder *b, Shape shape) {
    Tensor t = {.shape = shape, .capacity = shape_elems(shape)};
    if (b->be) t.data = graph_alloc(b->g, t.capacity);
    else b->layer->activation_elems += t.capacity;
    return t;
}

float *builder_scratch(Builder *b, int64_t n_elems) {
    if (!b->be) {
        if (n_elems > b->g->scratch_elems) b->g->scratch_elems = n_elems;
        return NULL;
    }
    YP_CHECK(n_elems <= b->g->scratch_elems);
    return b->g->scratch;
}

void builder_conv_workspace(Builder *b, const ConvDesc *d) {
    if (b->be) b->be->ops->reserve_workspace(b->be, b->be->ops->conv_workspace_bytes(b->be, d));
}

void builder_count_ops(Builder *b, double ops) {
    if (!b->be) b->layer->ops += ops;
}

void builder_count_leaves(Builder *b, int64_t n) {
    if (!b->be) b->layer->leaf_modules += n;
}

void builder_count_shared_activation(Builder *b) {
    if (b->be || b->shared_activation_counted) return;
    b->shared_activation_counted = true;
    b->layer->leaf_modules++;
}

void builder_set_stride(Builder *b, int level, int64_t stride) {
    YP_CHECK(level < (int)(sizeof b->g->strides / sizeof *b->g->strides));
    b->g->strides[level] = stride;
    if (level + 1 > b->g->n_strides) b->g->n_strides = level + 1;
}

// Resolves each row's inputs and runs its module's parse.
static bool graph_parse(Graph *g, Error *err) {
    const ModelSpec *spec = g->spec;
    for (int i = 0; i < g->n_layers; i++) {
        Layer *layer = &g->layers[i];
        const ModelRow *row = &spec->rows[i];
        layer->index = i;
        layer->row = row;
        layer->kind = layer_kind_find(row->module);
        YP_CHECK(layer->kind != LAYER_KIND_COUNT);  // model_spec_load checked the names
        layer->n_in = row->n_from;
        int64_t c_in[MODEL_MAX_FROM];
        for (int k = 0; k < row->n_from; k++) {
            layer->in_index[k] = row->from[k];
            c_in[k] = row->from[k] < 0 ? spec->ch : g->layers[row->from[k]].c_out;
        }
        ParseContext ctx = {.spec = spec, .c_in = c_in};
        if (!layer_kinds[layer->kind]->parse(layer, &ctx, err)) return false;
    }
    return true;
}

// Runs every layer's build; with b->be set, memory is bound and allocated.
static bool graph_build(Graph *g, Builder *b, Error *err) {
    for (int i = 0; i < g->n_layers; i++) {
        Layer *layer = &g->layers[i];
        for (int k = 0; k < layer->n_in; k++) {
            int from = layer->in_index[k];
            layer->in[k] = from < 0 ? &g->input : &g->layers[from].out;
            layer->din[k] = from < 0 ? NULL : &g->layers[from].dout;
        }
        b->layer = layer;
        b->prefix[0] = '\0';
        b->depth = 0;
        builder_push(b, "model");
        builder_push(b, "%d", i);
        if (!layer_kinds[layer->kind]->build(layer, b, err)) return false;
        layer->out_shape = layer->out.shape;
        if (b->be) {
            layer->dout = layer->out;
            layer->dout.data = graph_alloc(g, layer->out.capacity);
        }
    }
    return true;
}

static void graph_sum_layers(Graph *g) {
    for (int i = 0; i < g->n_layers; i++) {
        g->ops += g->layers[i].ops;
        g->leaf_modules += g->layers[i].leaf_modules;
        g->activation_elems += g->layers[i].activation_elems;
    }
}

static void graph_destroy_states(Graph *g) {
    for (int i = 0; i < g->n_layers; i++) {
        Layer *layer = &g->layers[i];
        if (layer->state) layer_kinds[layer->kind]->destroy_state(layer);
        layer->state = NULL;
    }
}

static void graph_allocate(Graph *g, Backend *be) {
    g->be = be;
    g->param_data = graph_alloc(g, g->param_elems);
    g->grad_data = graph_alloc(g, g->param_elems);  // same layout as the parameters
    g->buffer_data = graph_alloc(g, g->buffer_elems);
    g->scratch = graph_alloc(g, g->scratch_elems);
    g->input.data = graph_alloc(g, g->input.capacity);
    be->ops->fill(be, g->grad_data, 0.0f, (size_t)g->param_elems);
}

bool graph_create(const ModelSpec *spec, const GraphOptions *opt, Graph **out, Error *err) {
    *out = NULL;
    Graph *g = yp_calloc(1, sizeof *g);
    g->spec = spec;
    g->n_layers = spec->n_rows;
    g->layers = yp_calloc((size_t)g->n_layers, sizeof *g->layers);
    Shape input = shape_make(opt->batch, spec->ch, opt->imgsz_h, opt->imgsz_w);
    g->input = (Tensor){.shape = input, .capacity = shape_elems(input)};
    g->built_input = input;

    Builder b = {.g = g, .seed = opt->seed};
    bool ok = graph_parse(g, err);
    bool classifier = ok && g->layers[g->n_layers - 1].kind == LAYER_KIND_CLASSIFY;
    g->batchnorm = classifier ? (BatchNormSettings){.eps = 1e-5f, .momentum = 0.1f}
                              : (BatchNormSettings){.eps = 1e-3f, .momentum = 0.03f};
    ok = ok && graph_build(g, &b, err);
    if (ok) graph_sum_layers(g);
    if (ok && opt->be) {
        graph_destroy_states(g);
        graph_allocate(g, opt->be);
        b = (Builder){.g = g, .be = opt->be, .seed = opt->seed};
        ok = graph_build(g, &b, err);
        YP_CHECK(!ok || b.param_cursor == g->n_params);
    }
    if (!ok) {
        graph_destroy(g);
        return false;
    }
    *out = g;
    return true;
}

void graph_destroy(Graph *g) {
    if (!g) return;
    graph_destroy_states(g);
    for (int i = 0; i < g->n_layers; i++) free(g->layers[i].config);
    for (int i = 0; i < g->n_allocs; i++) g->be->ops->free(g->be, g->allocs[i]);
    free(g->allocs);
    free(g->layers);
    free(g->params);
    free(g);
}

bool graph_set_input_size(Graph *g, int64_t n, int64_t h, int64_t w, Error *err) {
    Shape max = g->built_input;
    int64_t stride = g->n_strides ? g->strides[g->n_strides - 1] : 32;
    if (n < 1 || n > max.n || h < stride || h > max.h || w < stride || w > max.w || h % stride || w % stride)
        return error_set(err, "input %lldx%lldx%lld does not fit the graph built for %lld images of %lldx%lld "
                              "(sides must be multiples of %lld, at most the built size)",
                         (long long)n, (long long)h, (long long)w, (long long)max.n, (long long)max.h, (long long)max.w,
                         (long long)stride);
    g->input.shape = shape_make(n, max.c, h, w);
    return true;
}

void graph_forward_layers(Graph *g, int begin, int end, bool train) {
    YP_CHECK(0 <= begin && begin <= end && end <= g->n_layers);
    for (int i = begin; i < end; i++) layer_kinds[g->layers[i].kind]->forward(&g->layers[i], g->be, train);
}

void graph_forward(Graph *g, bool train) { graph_forward_layers(g, 0, g->n_layers, train); }

void graph_backward_layers(Graph *g, int begin, int end) {
    YP_CHECK(0 <= begin && begin <= end && end <= g->n_layers);
    for (int i = end - 1; i >= begin; i--) {
        g->layers[i].dout.shape = g->layers[i].out.shape;
        layer_kinds[g->layers[i].kind]->backward(&g->layers[i], g->be);
    }
}

void graph_backward(Graph *g) {
    Backend *be = g->be;
    for (int i = 0; i + 1 < g->n_layers; i++)
        be->ops->fill(be, g->layers[i].dout.data, 0.0f, (size_t)tensor_elems(&g->layers[i].out));
    graph_backward_layers(g, 0, g->n_layers);
}

void graph_zero_grads(Graph *g) { g->be->ops->fill(g->be, g->grad_data, 0.0f, (size_t)g->param_elems); }

Layer *graph_output(Graph *g) { return &g->layers[g->n_layers - 1]; }

double graph_gflops(const Graph *g) { return 2.0 * g->ops / 1e9; }
