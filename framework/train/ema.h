// Exponential moving average of the model's weights, as Ultralytics' ModelEMA
// (ultralytics/utils/torch_utils.py), used for validation and saved in checkpoints.
//
// After every optimizer step: updates += 1, d = decay · (1 − exp(−updates / tau)), and every
// floating state-dict entry (parameters, fixed tensors and batch-norm running statistics) becomes
// lerp(ema, model, 1 − d) (PyTorch's lerp: ema + w·(model − ema) for w < 0.5, else
// model − (model − ema)·(1 − w)).
//
// The copy is one contiguous buffer of backend memory packed in the order of the entries given; for a
// whole graph (ema_entries_from_graph) that is the parameter buffer followed by the buffer buffer.
// An update is one call on the backend over the whole chunk table (BackendOps.ema_update, the table
// uploaded once at creation): element-wise over fixed chunks, so it does not depend on the number of
// threads.
#pragma once

#include <stdint.h>

#include "layers/graph.h"

#define EMA_DECAY 0.9999
#define EMA_TAU 2000.0

// One state-dict entry the EMA follows.
typedef struct EmaEntry {
    const char *name;    // copied by ema_create
    const float *value;  // (n_elems) backend memory, the model's live tensor; not owned
    int64_t n_elems;
} EmaEntry;

// Fills entries[] (room for g->n_params) with the state-dict entries of layers [layer_begin,
// layer_end): parameters in table order, then buffers in table order; names point into g.
// Returns how many. The graph needs memory.
int ema_entries_from_graph(const Graph *g, int layer_begin, int layer_end, EmaEntry *entries);

typedef struct ModelEma ModelEma;

// Copies the entries' current values on backend `be` (not owned; it must outlive the EMA), whose
// memory the entries are (the EMA starts equal to the model, updates = 0). The caller keeps the
// model's memory alive. Destroy with ema_destroy.
ModelEma *ema_create(Backend *be, const EmaEntry *entries, int n_entries, double decay, double tau);
void ema_destroy(ModelEma *ema);  // accepts NULL

// One update from the model's current values.
void ema_update(ModelEma *ema);

int64_t ema_updates(const ModelEma *ema);
void ema_set_updates(ModelEma *ema, int64_t updates);  // when resuming

// The averaged copy of entry `index` / of the entry with that name (NULL when there is none), in
// backend memory owned by the EMA.
float *ema_get(const ModelEma *ema, int index, int64_t *n_elems);
float *ema_find(const ModelEma *ema, const char *name, int64_t *n_elems);
int ema_count(const ModelEma *ema);

// Downloads the EMA to / uploads it from host arrays laid out like g's parameter and buffer storage
// (g->param_elems and g->buffer_elems floats), entry by state-dict name; every tensor of g must have
// its entry. For checkpoints and for swapping the EMA weights into the model.
void ema_copy_to_graph_layout(const ModelEma *ema, const Graph *g, float *params, float *buffers);
void ema_copy_from_graph_layout(ModelEma *ema, const Graph *g, const float *params, const float *buffers);
const char *ema_name(const ModelEma *ema, int index);
