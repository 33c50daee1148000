#include "framework/train/ema.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "framework/train/pack_layout.h"

struct ModelEma {
    Backend *be;  // not owned
    int n_entries;
    EmaEntry *entries;        // names owned
    PackLayout layout;
    MultiTensorTable *table;  // the layout's chunks on the backend, owned
    float *data;              // (layout.n_elems) the averaged copy, packed in entry order; backend memory, owned
    double decay, tau;
    int64_t updates;
};

int ema_entries_from_graph(const Graph *g, int layer_begin, int layer_end, EmaEntry *entries) {
    YP_CHECK(g->param_data && (g->buffer_data || g->buffer_elems == 0));
    int n = 0;
    // Parameters first, then buffers, so that a whole graph's copy is laid out as
    // [param_data | buffer_data].
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < g->n_params; i++) {
            const ParamInfo *p = &g->params[i];
            bool is_buffer = (p->flags & PARAM_BUFFER) != 0;
            if (is_buffer != (pass == 1) || p->layer < layer_begin || p->layer >= layer_end) continue;
            entries[n++] = (EmaEntry){.name = p->name,
                                      .value = (is_buffer ? g->buffer_data : g->param_data) + p->offset,
                                      .n_elems = p->n_elems};
        }
    }
    return n;
}

ModelEma *ema_create(Backend *be, const EmaEntry *entries, int n_entries, double decay, double tau) {
    YP_CHECK(n_entries >= 0 && tau > 0);
    ModelEma *ema = yp_calloc(1, sizeof *ema);
    ema->be = be;
    ema->n_entries = n_entries;
    ema->decay = decay;
    ema->tau = tau;
    ema->entries = yp_malloc((size_t)(n_entries ? n_entries : 1) * sizeof *ema->entries);
    int64_t *sizes = yp_malloc((size_t)(n_entries ? n_entries : 1) * sizeof *sizes);
    for (int i = 0; i < n_entries; i++) {
        YP_CHECK(entries[i].n_elems == 0 || entries[i].value);
        ema->entries[i] = entries[i];
        ema->entries[i].name = yp_strdup(entries[i].name);
        sizes[i] = entries[i].n_elems;
    }
    ema->layout = pack_layout_make(sizes, n_entries);
    free(sizes);
    const PackLayout *l = &ema->layout;
    MultiTensorChunk *chunks = yp_malloc((size_t)(l->n_chunks ? l->n_chunks : 1) * sizeof *chunks);
    for (int c = 0; c < l->n_chunks; c++) {
        int entry = l->chunks[c].entry;
        // The model's tensor is only read by ema_update; the chunk type is shared with the optimizer.
        chunks[c] = (MultiTensorChunk){.tensor = (float *)entries[entry].value, .state_offset = l->offset[entry],
                                       .begin = l->chunks[c].begin, .end = l->chunks[c].end};
    }
    ema->table = be->ops->multi_tensor_prepare(be, chunks, l->n_chunks);
    free(chunks);
    ema->data = be->ops->alloc(be, (size_t)l->n_elems * sizeof *ema->data);
    for (int i = 0; i < n_entries; i++)
        be->ops->copy(be, ema->data + l->offset[i], entries[i].value, (size_t)entries[i].n_elems * sizeof(float));
    return ema;
}

void ema_destroy(ModelEma *ema) {
    if (!ema) return;
    for (int i = 0; i < ema->n_entries; i++) free((char *)ema->entries[i].name);
    free(ema->entries);
    pack_layout_free(&ema->layout);
    ema->be->ops->multi_tensor_release(ema->be, ema->table);
    ema->be->ops->free(ema->be, ema->data);
    free(ema);
}

void ema_update(ModelEma *ema) {
    ema->updates++;
    double d = ema->decay * (1 - exp(-(double)ema->updates / ema->tau));
    // torch._foreach_lerp_(ema, model, 1 − d): the weight rounded to float, PyTorch's two formulas
    // (BackendOps.ema_update).
    ema->be->ops->ema_update(ema->be, ema->table, ema->data, (float)(1 - d));
}

int64_t ema_updates(const ModelEma *ema) { return ema->updates; }

void ema_set_updates(ModelEma *ema, int64_t updates) {
    YP_CHECK(updates >= 0);
    ema->updates = updates;
}

int ema_count(const ModelEma *ema) { return ema->n_entries; }

const char *ema_name(const ModelEma *ema, int index) {
    YP_CHECK(index >= 0 && index < ema->n_entries);
    return ema->entries[index].name;
}

float *ema_get(const ModelEma *ema, int index, int64_t *n_elems) {
    YP_CHECK(index >= 0 && index < ema->n_entries);
    *n_elems = ema->entries[index].n_elems;
    return ema->data + ema->layout.offset[index];
}

float *ema_find(const ModelEma *ema, const char *name, int64_t *n_elems) {
    for (int i = 0; i < ema->n_entries; i++)
        if (!strcmp(ema->entries[i].name, name)) return ema_get(ema, i, n_elems);
    return NULL;
}

// One walk for both directions: EMA entry (backend) <-> the tensor's place in the host layout.
static void ema_copy_graph_layout(const ModelEma *ema, const Graph *g, float *params, float *buffers, bool to_layout) {
    Backend *be = ema->be;
    for (int i = 0; i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        int64_t n = 0;
        float *entry = ema_find(ema, p->name, &n);
        YP_CHECK(entry && n == p->n_elems);
        float *place = (p->flags & PARAM_BUFFER ? buffers : params) + p->offset;
        if (to_layout) be->ops->download(be, place, entry, (size_t)n * sizeof(float));
        else be->ops->upload(be, entry, place, (size_t)n * sizeof(float));
    }
}

void ema_copy_to_graph_layout(const ModelEma *ema, const Graph *g, float *params, float *buffers) {
    ema_copy_graph_layout(ema, g, params, buffers, true);
}

void ema_copy_from_graph_layout(ModelEma *ema, const Graph *g, const float *params, const float *buffers) {
    ema_copy_graph_layout(ema, g, (float *)params, (float *)buffers, false);
}
