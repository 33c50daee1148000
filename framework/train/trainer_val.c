// Validation through the pipeline, and what the last stages send world rank 0 to score.
#include <stdlib.h>
#include <string.h>

#include "framework/train/trainer_internal.h"
#include "layers/graph.h"

// ---- the validation record ---------------------------------------------------------------------------
//
// What the last stage of a replica sends world rank 0 for each of its validation batches, as bytes
// (world rank 0 gathers every rank's and concatenates them): a ValRecordBatch, then, detecting, per
// image a ValRecordImage followed by its ValRecordDetections or, classifying, the batch's class
// scores (n_images x nc floats). val_record_write writes a record and val_record_read reads one;
// nothing else touches the bytes.

typedef struct ValRecordBatch {
    int64_t batch;     // index among the validation batches
    int64_t n_images;
} ValRecordBatch;

typedef struct ValRecordImage {
    int64_t n_detections;
} ValRecordImage;

typedef struct ValRecordDetection {
    float box[4];  // x1 y1 x2 y2 in network-input pixels, as Detections holds it
    float score;
    int32_t cls;
} ValRecordDetection;

_Static_assert(sizeof(ValRecordBatch) == 2 * sizeof(int64_t), "ValRecordBatch travels as bytes: no padding");
_Static_assert(sizeof(ValRecordImage) == sizeof(int64_t), "ValRecordImage travels as bytes: no padding");
_Static_assert(sizeof(ValRecordDetection) == 5 * sizeof(float) + sizeof(int32_t),
               "ValRecordDetection travels as bytes: no padding");

// This rank's records, growing.
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

static void blob_take(const char **cursor, void *dst, size_t n) {
    memcpy(dst, *cursor, n);
    *cursor += n;
}

// Appends the record of validation batch `b` (n_images images): the class scores in t->val_out
// (classifying) or the detections in t->detections.
static void val_record_write(const Trainer *t, ValBlob *blob, int64_t b, int64_t n_images) {
    blob_put(blob, &(ValRecordBatch){.batch = b, .n_images = n_images}, sizeof(ValRecordBatch));
    if (t->classify) {
        blob_put(blob, t->val_out, (size_t)(n_images * t->spec->nc) * sizeof(float));
        return;
    }
    const Detections *d = t->detections;
    for (int64_t i = 0; i < n_images; i++) {
        blob_put(blob, &(ValRecordImage){.n_detections = d->count[i]}, sizeof(ValRecordImage));
        for (int64_t j = 0; j < d->count[i]; j++) {
            int64_t at = i * d->max_det + j;
            const float *box = d->boxes + at * 4;
            ValRecordDetection det = {.box = {box[0], box[1], box[2], box[3]}, .score = d->scores[at], .cls = d->cls[at]};
            blob_put(blob, &det, sizeof det);
        }
    }
}

// Reads the record at *cursor and moves past it. Detecting, its detections go into `d` (n_images and
// counts included) unless d is NULL; classifying, *class_scores points at its scores inside the
// record unless class_scores is NULL. With both NULL the record is only skipped.
static ValRecordBatch val_record_read(const Trainer *t, const char **cursor, Detections *d, const float **class_scores) {
    ValRecordBatch rec;
    blob_take(cursor, &rec, sizeof rec);
    YP_CHECK(rec.n_images >= 0 && rec.n_images <= t->micro);
    if (t->classify) {
        if (class_scores) *class_scores = (const float *)*cursor;
        *cursor += (size_t)(rec.n_images * t->spec->nc) * sizeof(float);
        return rec;
    }
    if (d) d->n_images = rec.n_images;
    for (int64_t i = 0; i < rec.n_images; i++) {
        ValRecordImage image;
        blob_take(cursor, &image, sizeof image);
        YP_CHECK(image.n_detections >= 0 && image.n_detections <= t->cfg->val.max_det);
        if (!d) {
            *cursor += (size_t)image.n_detections * sizeof(ValRecordDetection);
            continue;
        }
        d->count[i] = image.n_detections;
        for (int64_t j = 0; j < image.n_detections; j++) {
            ValRecordDetection det;
            blob_take(cursor, &det, sizeof det);
            int64_t at = i * d->max_det + j;
            memcpy(d->boxes + at * 4, det.box, sizeof det.box);
            d->scores[at] = det.score;
            d->cls[at] = det.cls;
        }
    }
    return rec;
}

// ---- validation --------------------------------------------------------------------------------------

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
            if (!t->classify) {
                t->detections->n_images = req.n;
                detect_decoder_nms(t->decoder, t->val_out, req.n, &nms, t->detections);
            }
            val_record_write(t, blob, b, req.n);
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
        const char *start = p;
        int64_t b = val_record_read(t, &p, NULL, NULL).batch;
        YP_CHECK(b >= 0 && b < n_batches && !at[b]);
        at[b] = start;
    }
    bool ok = true;
    if (t->metrics) detect_metrics_reset(t->metrics);
    for (int64_t b = 0; ok && b < n_batches; b++) {
        YP_CHECK(at[b]);
        Batch batch;
        bool plot = trainer_plots_val_batch(t, b);
        BatchRequest req = val_request(t, b, BATCH_PART_TARGETS | (plot ? BATCH_PART_IMAGES : 0));
        if (!(ok = loader_build(split, &t->val_options, order, &req, &batch, err))) break;
        const char *p = at[b];
        const float *class_scores = NULL;
        ValRecordBatch rec = val_record_read(t, &p, t->classify ? NULL : t->detections, &class_scores);
        YP_CHECK(rec.n_images == req.n);
        if (plot) trainer_plot_val_batch(t, b, &batch, class_scores);
        if (t->classify) classify_metrics_add(&res->classify, class_scores, batch.labels, req.n);
        else detect_metrics_add_batch(t->metrics, t->detections, batch.targets, batch.n_targets, batch.h, batch.w);
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
    *res = (ValResult){.classify = {.nc = t->spec->nc, .confusion = trainer_curves_classify_matrix(t)}};
    const DatasetSplit *split = t->splits[DATASET_SPLIT_VAL];
    if (!t->val_ready) {
        t->val_ready = true;
        int64_t side = t->cfg->train.imgsz;
        if (executor_loads_targets(t->ex))
            t->val_out = yp_malloc((size_t)(t->micro * executor_output_elems(t->ex, side)) * sizeof(float));
        if (!t->classify) {
            t->decoder = detect_decoder_for_graph(t->ep.graph, side, side, t->spec->nc);
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
    TrainerLossWire loss = trainer_loss_wire_write(&res->loss);
    t->tr->ops->allreduce_sum_f64(t->tr, (double *)&loss, TRAINER_LOSS_WIRE_DOUBLES, TRANSPORT_WORLD);
    res->loss = trainer_loss_wire_read(&loss);
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

void trainer_print_validation(Trainer *t, const char *label, const ValResult *res) {
    if (!t->lead) return;
    fprintf(t->out, "%s validation:\n", label);
    if (t->classify) classify_metrics_print(&res->classify, t->out);
    else detect_summary_print(res->detect, (const char *const *)t->dataset->names, t->out);
}
