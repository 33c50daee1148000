#include "layers/graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/rng.h"
#include "layers/blocks.h"

enum { BUILDER_MAX_DEPTH = 16 };

struct Builder {
    Graph *g;
    Layer *layer;
    Backend *be;             // NULL while describing
    bool init_params;        // with memory: initialise parameters (false when sharing another's)
    uint64_t seed;
    char prefix[PARAM_NAME_MAX];
    size_t prefix_len[BUILDER_MAX_DEPTH];
    int depth;
    int param_cursor;        // with memory: the next ParamInfo to bind
    bool shared_counted[SHARED_MODULE_COUNT];  // builder_count_shared_module
    bool too_large;          // a count passed BUILDER_MAX_ELEMS (builder_elems)
};

Backend *builder_backend(const Builder *b) { return b->be; }
Layer *builder_layer(const Builder *b) { return b->layer; }
const ModelSpec *builder_spec(const Builder *b) { return b->g->spec; }
BatchNormSettings builder_batchnorm_settings(const Builder *b) { return b->g->batchnorm; }
int64_t builder_imgsz_h(const Builder *b) { return b->g->input.shape.h; }
ConvWeightQueue *builder_conv_weight_queue(const Builder *b) { return b->g->weight_queue; }

static bool graph_in_range(const Graph *g, int layer) { return g->layer_begin <= layer && layer < g->layer_end; }

int64_t builder_elems(Builder *b, int n, const int64_t *factors) {
    int64_t product = 1;
    for (int i = 0; i < n; i++) {
        YP_CHECK(factors[i] >= 0);
        if (__builtin_mul_overflow(product, factors[i], &product) || product > BUILDER_MAX_ELEMS) {
            b->too_large = true;
            return BUILDER_MAX_ELEMS + 1;
        }
    }
    return product;
}

// *total += n for a count builder_elems gave, with the same limit.
static void builder_add(Builder *b, int64_t *total, int64_t n) {
    *total = builder_elems(b, 1, (int64_t[]){*total + n});
}

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
        be->ops->upload(be, dst, host, (size_t)p->n_elems * sizeof(float));
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
    if (!b->be) {  // describing: count, and append to the table when the layer is in the range
        int64_t n_elems = builder_elems(b, ndim, dims);
        if (!(flags & PARAM_BUFFER)) {
            builder_add(b, &b->layer->n_params, n_elems);
            if (!(flags & PARAM_NO_GRAD)) builder_add(b, &b->layer->n_grads, n_elems);
        }
        if (!graph_in_range(g, b->layer->index)) return (Param){.n_elems = n_elems};
        g->params = yp_realloc(g->params, (size_t)(g->n_params + 1) * sizeof *g->params);
        ParamInfo *p = &g->params[g->n_params++];
        *p = (ParamInfo){.ndim = ndim, .n_elems = n_elems, .flags = flags, .layer = b->layer->index, .init = init};
        memcpy(p->name, full, (size_t)n + 1);
        memcpy(p->dims, dims, (size_t)ndim * sizeof *dims);
        if (flags & PARAM_BUFFER) {
            p->offset = g->buffer_elems;
            builder_add(b, &g->buffer_elems, p->n_elems);
        } else {
            p->offset = g->param_elems;
            builder_add(b, &g->param_elems, p->n_elems);
            if (!(flags & PARAM_NO_GRAD)) builder_add(b, &g->grad_elems, p->n_elems);
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
    if (b->init_params) param_initialise(b->be, p, param.value, b->seed);
    return param;
}

void builder_param_fill(Builder *b, Param p, float value) {
    if (b->be && b->init_params) b->be->ops->fill(b->be, p.value, value, (size_t)p.n_elems);
}

void builder_param_copy(Builder *b, Param dst, Param src) {
    YP_CHECK(dst.n_elems == src.n_elems);
    if (b->be && b->init_params && dst.n_elems)
        b->be->ops->copy(b->be, dst.value, src.value, (size_t)dst.n_elems * sizeof(float));
}

static void *graph_alloc(Graph *g, size_t n_bytes) {
    g->allocs = yp_realloc(g->allocs, (size_t)(g->n_allocs + 1) * sizeof *g->allocs);
    void *p = g->be->ops->alloc(g->be, n_bytes);
    g->allocs[g->n_allocs++] = p;
    g->allocated_bytes += (int64_t)n_bytes;
    return p;
}

// Activation memory of n elements; remembers the largest tensor for the backend (reserve_activations).
static void *graph_alloc_activation(Graph *g, int64_t n_elems) {
    if (n_elems > g->largest_activation) g->largest_activation = n_elems;
    return graph_alloc(g, backend_act_bytes(g->be, n_elems));
}

Tensor builder_tensor(Builder *b, Shape shape) {
    Tensor t = {.shape = shape, .capacity = builder_elems(b, 4, (int64_t[]){shape.n, shape.c, shape.h, shape.w})};
    if (b->be) t.data = graph_alloc_activation(b->g, t.capacity);
    else builder_add(b, &b->layer->activation_elems, t.capacity);
    return t;
}

float *builder_statistics(Builder *b, int64_t n) {
    if (b->be) return graph_alloc(b->g, (size_t)n * sizeof(float));
    builder_add(b, &b->layer->activation_elems, builder_elems(b, 1, &n));
    return NULL;
}

void *builder_scratch(Builder *b, int64_t n_elems) {
    if (!b->be) {
        if (graph_in_range(b->g, b->layer->index) && n_elems > b->g->scratch_elems) b->g->scratch_elems = n_elems;
        return NULL;
    }
    YP_CHECK(n_elems <= b->g->scratch_elems);
    return b->g->scratch;
}

void builder_conv_workspace(Builder *b, const ConvDesc *d) {
    if (b->be) b->be->ops->reserve_workspace(b->be, b->be->ops->conv_workspace_bytes(b->be, d));
}

void builder_attention_workspace(Builder *b, const AttentionArgs *a) {
    if (b->be) b->be->ops->reserve_workspace(b->be, b->be->ops->attention_workspace_bytes(b->be, a));
}

void builder_count_uncounted_ops(Builder *b, double ops) {
    if (!b->be) b->layer->uncounted_ops += ops;
}

void builder_count_ops(Builder *b, double ops) {
    if (!b->be) b->layer->ops += ops;
}

void builder_count_leaves(Builder *b, int64_t n) {
    if (!b->be) b->layer->leaf_modules += n;
}

void builder_count_shared_module(Builder *b, SharedModule which) {
    YP_CHECK(which < SHARED_MODULE_COUNT);
    if (b->be || b->shared_counted[which]) return;
    b->shared_counted[which] = true;
    b->layer->leaf_modules++;
}

void builder_set_stride(Builder *b, int level, int64_t stride) {
    YP_CHECK(level < (int)(sizeof b->g->strides / sizeof *b->g->strides));
    b->g->strides[level] = stride;
    if (level + 1 > b->g->n_strides) b->g->n_strides = level + 1;
}

void builder_set_reg_max(Builder *b, int64_t reg_max) { b->g->reg_max = reg_max; }

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
        ParseContext ctx = {.spec = spec, .c_in = c_in, .layers = g->layers};
        if (!layer_kinds[layer->kind]->parse(layer, &ctx, err)) return false;
    }
    return true;
}

// Runs the build of layers [begin, end); with b->be set, memory is bound and allocated.
static bool graph_build(Graph *g, Builder *b, int begin, int end, Error *err) {
    for (int i = begin; i < end; i++) {
        Layer *layer = &g->layers[i];
        for (int k = 0; k < layer->n_in; k++) {
            int from = layer->in_index[k];
            layer->in[k] = from < 0 ? &g->input : &g->layers[from].out;
            layer->din[k] = from >= 0 ? &g->layers[from].dout : g->dinput.data ? &g->dinput : NULL;
        }
        b->layer = layer;
        b->prefix[0] = '\0';
        b->depth = 0;
        builder_push(b, "model");
        builder_push(b, "%d", i);
        if (!layer_kinds[layer->kind]->build(layer, b, err)) return false;
        if (b->too_large)
            return model_spec_error_at(g->spec, layer->row->node, err,
                                       "layer %d is too large: a tensor or its parameters pass 2^40 elements (check its "
                                       "channels, kernel and repeats, and the image size)", i);
        layer->out_shape = layer->out.shape;
        if (b->be) {
            layer->dout = layer->out;
            layer->dout.data = graph_alloc_activation(g, layer->out.capacity);
        }
    }
    return true;
}

static void graph_sum_layers(Graph *g) {
    for (int i = g->layer_begin; i < g->layer_end; i++) {
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

// True when a layer of the range reads `layer`'s output (layer -1: the network input).
static bool graph_range_reads(const Graph *g, int layer) {
    for (int i = g->layer_begin; i < g->layer_end; i++)
        for (int k = 0; k < g->layers[i].n_in; k++)
            if (g->layers[i].in_index[k] == layer) return true;
    return false;
}

static bool graph_is_external_producer(const Graph *g, int layer) {
    return layer < g->layer_begin && graph_range_reads(g, layer);
}

bool graph_layer_has_memory(const Graph *g, int layer) {
    YP_CHECK(0 <= layer && layer < g->n_layers);
    return graph_in_range(g, layer) || graph_is_external_producer(g, layer);
}

// Everything but the range's layers: weights (owned or shared), the input and the external
// producers' out and dout at their built shapes.
static void graph_allocate(Graph *g, Backend *be, const Graph *owner, bool input_grad) {
    g->be = be;
    if (owner) {
        YP_CHECK(owner->be == be && owner->spec == g->spec && owner->layer_begin == g->layer_begin &&
                 owner->layer_end == g->layer_end && owner->param_elems == g->param_elems &&
                 owner->buffer_elems == g->buffer_elems && owner->scratch_elems >= g->scratch_elems &&
                 !owner->weights_owner);
        g->weights_owner = owner;
        g->param_data = owner->param_data;
        g->grad_data = owner->grad_data;
        g->buffer_data = owner->buffer_data;
        g->scratch = owner->scratch;
    } else {
        g->param_data = graph_alloc(g, (size_t)g->param_elems * sizeof(float));
        g->grad_data = graph_alloc(g, (size_t)g->param_elems * sizeof(float));  // same layout as the parameters
        g->buffer_data = graph_alloc(g, (size_t)g->buffer_elems * sizeof(float));
        g->scratch = graph_alloc_activation(g, g->scratch_elems);
        be->ops->fill(be, g->grad_data, 0.0f, (size_t)g->param_elems);
    }
    if (graph_range_reads(g, -1)) g->input.data = graph_alloc_activation(g, g->input.capacity);
    if (input_grad && g->input.data) {
        g->dinput = g->input;
        g->dinput.data = graph_alloc_activation(g, g->input.capacity);
    }
    for (int i = 0; i < g->layer_begin; i++) {
        if (!graph_is_external_producer(g, i)) continue;
        Layer *layer = &g->layers[i];
        Shape s = layer->out_shape;
        layer->out = (Tensor){.data = graph_alloc_activation(g, shape_elems(s)), .shape = s, .capacity = shape_elems(s)};
        layer->dout = layer->out;
        layer->dout.data = graph_alloc_activation(g, shape_elems(s));
    }
}

bool graph_create(const ModelSpec *spec, const GraphOptions *opt, Graph **out, Error *err) {
    *out = NULL;
    Graph *g = yp_calloc(1, sizeof *g);
    g->spec = spec;
    g->n_layers = spec->n_rows;
    g->layers = yp_calloc((size_t)g->n_layers, sizeof *g->layers);
    Builder b = {.g = g, .seed = opt->seed};
    Shape input = shape_make(opt->batch, spec->ch, opt->imgsz_h, opt->imgsz_w);
    g->input = (Tensor){.shape = input, .capacity = builder_elems(&b, 4, (int64_t[]){input.n, input.c, input.h, input.w})};
    g->built_input = input;
    if (b.too_large) {
        model_spec_error_at(spec, yaml_map_get(spec->yaml, yaml_doc_root(spec->yaml), "ch"), err,
                            "the network input %lld x %lld x %lld x %lld (batch x ch x height x width) passes 2^40 elements",
                            (long long)input.n, (long long)input.c, (long long)input.h, (long long)input.w);
        graph_destroy(g);
        return false;
    }

    g->layer_begin = opt->layer_begin;
    g->layer_end = opt->layer_end ? opt->layer_end : g->n_layers;
    YP_CHECK(0 <= g->layer_begin && g->layer_begin < g->layer_end && g->layer_end <= g->n_layers);
    YP_CHECK(!opt->share_weights || opt->be);
    if (opt->split_backward) g->weight_queue = conv_weight_queue_create();

    // Every layer is described: the range's shapes depend on all earlier layers.
    bool ok = graph_parse(g, err);
    bool classifier = ok && g->layers[g->n_layers - 1].kind == LAYER_KIND_CLASSIFY;
    g->batchnorm = classifier ? (BatchNormSettings){.eps = 1e-5f, .momentum = 0.1f}
                              : (BatchNormSettings){.eps = 1e-3f, .momentum = 0.03f};
    ok = ok && graph_build(g, &b, 0, g->n_layers, err);
    if (ok) graph_sum_layers(g);
    if (ok && opt->be) {
        graph_destroy_states(g);
        graph_allocate(g, opt->be, opt->share_weights, opt->input_grad);
        b = (Builder){.g = g, .be = opt->be, .init_params = !opt->share_weights, .seed = opt->seed};
        ok = graph_build(g, &b, g->layer_begin, g->layer_end, err);
        YP_CHECK(!ok || b.param_cursor == g->n_params);
        if (ok) opt->be->ops->reserve_activations(opt->be, (size_t)g->largest_activation);
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
    conv_weight_queue_destroy(g->weight_queue);
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
    g->input.shape = g->dinput.shape = shape_make(n, max.c, h, w);
    for (int i = 0; i < g->layer_begin; i++) {
        if (!graph_is_external_producer(g, i)) continue;
        g->layers[i].out.shape = g->layers[i].dout.shape = graph_layer_shape(g, i);
    }
    return true;
}

// Almost every YOLO layer's output is (N, C, H / s, W / s) for a fixed stride s, so the built shape
// scales with the input; Detect's anchors are the sum of its levels' positions, Classify's (N, nc, 1, 1)
// depends on N only, and a kind with out_shape derives its own from its inputs'.
Shape graph_layer_shape(const Graph *g, int layer) {
    YP_CHECK(-1 <= layer && layer < g->n_layers);
    Shape in = g->input.shape, max = g->built_input;
    if (layer < 0) return in;
    const Layer *l = &g->layers[layer];
    Shape built = l->out_shape;
    if (l->kind == LAYER_KIND_CLASSIFY) return shape_make(in.n, built.c, 1, 1);
    if (layer_kinds[l->kind]->out_shape) {
        Shape ins[MODEL_MAX_FROM];
        for (int k = 0; k < l->n_in; k++) ins[k] = graph_layer_shape(g, l->in_index[k]);
        return layer_kinds[l->kind]->out_shape(l, ins);
    }
    if (layer_kinds[l->kind]->detect_head) {
        int64_t anchors = 0;
        for (int k = 0; k < l->n_in; k++) anchors += shape_hw(graph_layer_shape(g, l->in_index[k]));
        return shape_make(in.n, built.c, anchors, 1);
    }
    YP_CHECK(built.h * in.h % max.h == 0 && built.w * in.w % max.w == 0);
    return shape_make(in.n, built.c, built.h * in.h / max.h, built.w * in.w / max.w);
}

static void graph_check_range(const Graph *g, int begin, int end) {
    YP_CHECK(g->layer_begin <= begin && begin <= end && end <= g->layer_end);
}

// Forward or another backward before W would overwrite what the deferred weight gradients read.
static void graph_check_no_weight_pass_waiting(const Graph *g) {
    YP_CHECK(!g->weight_queue || !g->weight_queue->waiting);
}

void graph_forward_layers(Graph *g, int begin, int end, bool train) {
    graph_check_range(g, begin, end);
    graph_check_no_weight_pass_waiting(g);
    for (int i = begin; i < end; i++) layer_kinds[g->layers[i].kind]->forward(&g->layers[i], g->be, train);
}

void graph_forward(Graph *g, bool train) { graph_forward_layers(g, g->layer_begin, g->layer_end, train); }

static void graph_run_backward(Graph *g, int begin, int end) {
    graph_check_range(g, begin, end);
    for (int i = end - 1; i >= begin; i--) {
        g->layers[i].dout.shape = g->layers[i].out.shape;
        layer_kinds[g->layers[i].kind]->backward(&g->layers[i], g->be);
    }
}

void graph_backward_layers(Graph *g, int begin, int end) {
    graph_check_no_weight_pass_waiting(g);
    graph_run_backward(g, begin, end);
}

void graph_backward_input_layers(Graph *g, int begin, int end) {
    ConvWeightQueue *q = g->weight_queue;
    YP_CHECK(q);  // the graph was created with split_backward
    q->deferring = true;
    graph_run_backward(g, begin, end);
    q->deferring = false;
    q->waiting = true;
}

void graph_backward_weight(Graph *g) {
    ConvWeightQueue *q = g->weight_queue;
    YP_CHECK(q && q->waiting);  // an input pass came first
    conv_weight_queue_run(q, g->be);
    q->waiting = false;
}

// Zeroes the output gradients of every layer with memory except `keep` (-1: none), at the shapes of
// their outputs (set by forward, or by graph_set_input_size for external producers), and gives each
// dout its output's shape: a stage adds received gradients into dout before the layer's backward
// runs, and until then a range layer's dout would keep the previous pass's (multi-scale) shape.
static void graph_zero_douts(Graph *g, int keep) {
    Backend *be = g->be;
    for (int i = 0; i < g->layer_end; i++) {
        if (i == keep || !graph_layer_has_memory(g, i)) continue;
        g->layers[i].dout.shape = g->layers[i].out.shape;
        be->ops->zero(be, g->layers[i].dout.data, backend_act_bytes(be, tensor_elems(&g->layers[i].out)));
    }
    if (g->dinput.data) be->ops->zero(be, g->dinput.data, backend_act_bytes(be, tensor_elems(&g->input)));
}

void graph_zero_activation_grads(Graph *g) { graph_zero_douts(g, -1); }

void graph_backward(Graph *g) {
    graph_zero_douts(g, g->layer_end - 1);
    graph_backward_layers(g, g->layer_begin, g->layer_end);
}

void graph_zero_grads(Graph *g) { g->be->ops->fill(g->be, g->grad_data, 0.0f, (size_t)g->param_elems); }

Layer *graph_output(Graph *g) {
    YP_CHECK(g->layer_end == g->n_layers);
    return &g->layers[g->n_layers - 1];
}

double graph_gflops(const Graph *g) { return 2.0 * g->ops / 1e9; }
