// Validation through the pipeline, and what the last stages send world rank 0 to score.
#include <stdlib.h>
#include <string.h>

#include "framework/train/trainer_internal.h"
#include "layers/graph.h"
#include "layers/loss.h"

// Swaps the model's weights with the EMA's on every chunk (validation scores the EMA, as Ultralytics does).
void trainer_use_ema(Trainer *t, bool use) {
    Backend *be = t->be;
    for (int c = 0; c < t->n_chunks; c++) {
        Graph *g = executor_chunk(t->ex, c)->graph;
        TrainerChunk *tc = &t->chunks[c];
        if (use) {
            be->ops->download(be, tc->live_params, g->param_data, (size_t)g->param_elems * sizeof(float));
            be->ops->download(be, tc->live_buffers, g->buffer_data, (size_t)g->buffer_elems * sizeof(float));
            ema_copy_to_graph_layout(tc->ema, g, tc->ema_params, tc->ema_buffers);
            be->ops->upload(be, g->param_data, tc->ema_params, (size_t)g->param_elems * sizeof(float));
            be->ops->upload(be, g->buffer_data, tc->ema_buffers, (size_t)g->buffer_elems * sizeof(float));
        } else {
            be->ops->upload(be, g->param_data, tc->live_params, (size_t)g->param_elems * sizeof(float));
            be->ops->upload(be, g->buffer_data, tc->live_buffers, (size_t)g->buffer_elems * sizeof(float));
        }
    }
}

// What the last stage sends world rank 0 per validation batch: its index, then per image the
// detections (count, then boxes, scores, classes), or the class scores when classifying.
typedef struct ValBlob {
    char *data;
    size_t size, cap;
} ValBlob;

static void blob_put(ValBlob *b, const void *src, size_t n) {
    if (b->size + n > b->cap) {
        b->cap = 2 * (b->size + n) + 4096;
        b->data = yp_realloc(b->data, b->cap);
    }
    memcpy(b->data + b->size, src, n);
    b->size += n;
}

static const void *blob_take(const char **cursor, size_t n) {
    const void *p = *cursor;
    *cursor += n;
    return p;
}

static BatchRequest val_request(const Trainer *t, int64_t b, unsigned parts) {
    int64_t n_val = t->splits[DATASET_SPLIT_VAL]->n_samples, first = b * t->micro;
    return (BatchRequest){.first = first, .n = n_val - first < t->micro ? n_val - first : t->micro,
                          .imgsz = (int)t->cfg->train.imgsz, .parts = parts};
}

// The last stage's share: forward every validation batch of this replica, keep what rank 0 needs.
static bool trainer_validate_batches(Trainer *t, const int64_t *order, ExecutorLoss *loss, ValBlob *blob, Error *err) {
    const DatasetSplit *split = t->splits[DATASET_SPLIT_VAL];
    int64_t n_batches = loader_batch_count(split->n_samples, t->micro, false), side = t->cfg->train.imgsz;
    bool images = executor_loads_images(t->ex), last = executor_loads_targets(t->ex);
    NmsConfig nms = nms_config_validation();
    nms.conf = (float)t->cfg->val.conf;
    nms.iou = t->cfg->val.iou;
    nms.max_det = t->cfg->val.max_det;
    for (int64_t b = t->topo->replica; b < n_batches; b += t->topo->replicas) {
        Batch batch = {0};
        unsigned parts = (images ? BATCH_PART_IMAGES : 0) | (last ? BATCH_PART_TARGETS : 0);
        BatchRequest req = val_request(t, b, parts);
        if (parts && !loader_build(split, &t->val_options, order, &req, &batch, err)) return false;
        executor_forward(t->ex, req.n, side, batch.images, t->val_out, last ? &batch : NULL, loss);
        if (last) {
            blob_put(blob, &b, sizeof b);
            if (t->classify) {
                blob_put(blob, t->val_out, (size_t)(req.n * t->spec->nc) * sizeof(float));
            } else {
                t->detections->n_images = req.n;
                detect_decoder_nms(t->decoder, t->val_out, req.n, &nms, t->detections);
                const Detections *d = t->detections;
                for (int64_t i = 0; i < req.n; i++) {
                    int64_t k = d->count[i];
                    blob_put(blob, &k, sizeof k);
                    blob_put(blob, d->boxes + i * d->max_det * 4, (size_t)k * 4 * sizeof(float));
                    blob_put(blob, d->scores + i * d->max_det, (size_t)k * sizeof(float));
                    blob_put(blob, d->cls + i * d->max_det, (size_t)k * sizeof(int32_t));
                }
            }
        }
        loader_batch_free(&batch);
    }
    return true;
}

// World rank 0: the metrics of every batch, in order, from the gathered blobs and its own targets.
static bool trainer_score(Trainer *t, const int64_t *order, const char *all, size_t total, ValResult *res, Error *err) {
    const DatasetSplit *split = t->splits[DATASET_SPLIT_VAL];
    int64_t n_batches = loader_batch_count(split->n_samples, t->micro, false);
    const char **at = yp_calloc((size_t)n_batches, sizeof *at);  // where each batch's record starts
    for (const char *p = all; p < all + total;) {
        int64_t b = *(const int64_t *)blob_take(&p, sizeof(int64_t));
        YP_CHECK(b >= 0 && b < n_batches && !at[b]);
        at[b] = p;
        int64_t n = val_request(t, b, BATCH_PART_TARGETS).n;
        if (t->classify) p += (size_t)(n * t->spec->nc) * sizeof(float);
        else
            for (int64_t i = 0; i < n; i++) {
                int64_t k = *(const int64_t *)blob_take(&p, sizeof(int64_t));
                p += (size_t)k * (6 * sizeof(float));
            }
    }
    bool ok = true;
    if (t->metrics) detect_metrics_reset(t->metrics);
    for (int64_t b = 0; ok && b < n_batches; b++) {
        YP_CHECK(at[b]);
        Batch batch;
        BatchRequest req = val_request(t, b, BATCH_PART_TARGETS);
        if (!(ok = loader_build(split, &t->val_options, order, &req, &batch, err))) break;
        const char *p = at[b];
        if (t->classify) {
            classify_metrics_add(&res->classify, (const float *)p, batch.labels, req.n);
        } else {
            Detections *d = t->detections;
            d->n_images = req.n;
            for (int64_t i = 0; i < req.n; i++) {
                int64_t k = d->count[i] = *(const int64_t *)blob_take(&p, sizeof(int64_t));
                memcpy(d->boxes + i * d->max_det * 4, blob_take(&p, (size_t)k * 4 * sizeof(float)), (size_t)k * 4 * sizeof(float));
                memcpy(d->scores + i * d->max_det, blob_take(&p, (size_t)k * sizeof(float)), (size_t)k * sizeof(float));
                memcpy(d->cls + i * d->max_det, blob_take(&p, (size_t)k * sizeof(int32_t)), (size_t)k * sizeof(int32_t));
            }
            detect_metrics_add_batch(t->metrics, d, batch.targets, batch.n_targets, batch.h, batch.w);
        }
        loader_batch_free(&batch);
    }
    free(at);
    if (ok && t->classify) res->fitness = classify_metrics_fitness(&res->classify);
    else if (ok) {
        res->detect = detect_metrics_finalize(t->metrics);
        res->fitness = res->detect->fitness;
    }
    return ok;
}

// Validation through the pipeline: each replica forwards every replicas-th batch (forward only, EMA
// weights, running statistics), the last stages gather their detections at world rank 0, which scores
// them all. Every rank returns the same fitness.
bool trainer_validate(Trainer *t, ValResult *res, Error *err) {
    *res = (ValResult){.classify = {.nc = t->spec->nc}};
    const DatasetSplit *split = t->splits[DATASET_SPLIT_VAL];
    if (!t->val_out) {
        int64_t side = t->cfg->train.imgsz;
        if (executor_loads_targets(t->ex))
            t->val_out = yp_malloc((size_t)(t->micro * executor_output_elems(t->ex, side)) * sizeof(float));
        if (!t->classify) {
            const Graph *g = t->ep.graph;
            DetectLevelSize levels[DETECT_LOSS_MAX_LEVELS];
            for (int i = 0; i < g->n_strides; i++)
                levels[i] = (DetectLevelSize){.h = side / g->strides[i], .w = side / g->strides[i], .stride = g->strides[i]};
            t->decoder = detect_decoder_create(levels, g->n_strides, t->spec->nc, t->spec->reg_max);
            t->detections = detections_create(t->micro, t->cfg->val.max_det);
            t->metrics = detect_metrics_create(t->spec->nc);
        }
    }
    int64_t *order = yp_malloc((size_t)(split->n_samples + 1) * sizeof *order);
    loader_epoch_order(0, 0, split->n_samples, false, order);
    ValBlob blob = {0};
    bool ok = trainer_validate_batches(t, order, &res->loss, &blob, err);
    if (!trainer_all_ranks_ok(t, ok, err)) {
        free(blob.data);
        free(order);
        return false;
    }
    double loss[6] = {res->loss.box, res->loss.cls, res->loss.dfl, res->loss.ce, res->loss.n, res->loss.instances};
    t->tr->ops->allreduce_sum_f64(t->tr, loss, 6, TRANSPORT_WORLD);
    res->loss = (ExecutorLoss){loss[0], loss[1], loss[2], loss[3], loss[4], loss[5]};
    void *all = NULL;
    size_t *sizes = yp_calloc((size_t)t->topo->world_size, sizeof *sizes);
    t->tr->ops->gather_bytes(t->tr, blob.data, blob.size, &all, sizes);
    if (t->lead) {
        size_t total = 0;
        for (int r = 0; r < t->topo->world_size; r++) total += sizes[r];
        ok = trainer_score(t, order, all, total, res, err);
    }
    ok = trainer_all_ranks_ok(t, ok, err);
    t->tr->ops->broadcast(t->tr, &res->fitness, sizeof res->fitness, 0, TRANSPORT_WORLD);
    free(all);
    free(sizes);
    free(blob.data);
    free(order);
    return ok;
}

void trainer_print_validation(Trainer *t, const ValResult *res) {
    if (!t->lead) return;
    if (t->classify) classify_metrics_print(&res->classify, t->out);
    else detect_summary_print(res->detect, (const char *const *)t->dataset->names, t->out);
}
