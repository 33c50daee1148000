#include "framework/data/loader.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/rng.h"

// Draw indices on a sample's own stream; the transforms draw on sub-streams named after them.
enum { DRAW_MOSAIC = 0, DRAW_PARTNER = 1, DRAW_FLIP = 4 };  // partners: 1, 2, 3

LoaderOptions loader_options_train(int64_t batch_size, uint64_t seed) {
    return (LoaderOptions){.batch_size = batch_size, .shuffle = true, .augment = true, .drop_last = true, .seed = seed,
                           .n_workers = 2, .prefetch = 4, .aug = augment_settings_default()};
}

LoaderOptions loader_options_val(int64_t batch_size) {
    return (LoaderOptions){.batch_size = batch_size, .n_workers = 2, .prefetch = 4, .aug = augment_settings_default()};
}

int64_t loader_batch_count(int64_t n_samples, int64_t batch_size, bool drop_last) {
    YP_CHECK(batch_size > 0 && n_samples >= 0);
    return drop_last ? n_samples / batch_size : (n_samples + batch_size - 1) / batch_size;
}

void loader_epoch_order(uint64_t seed, int64_t epoch, int64_t n, bool shuffle, int64_t *order) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    uint64_t stream = rng_mix64(rng_seed_for_name(seed, "epoch order") ^ (uint64_t)epoch);
    for (int64_t i = n - 1; i > 0; i--) {  // Fisher-Yates, one 64-bit draw per position
        int64_t j = (int64_t)(rng_mix64(stream ^ rng_mix64((uint64_t)i)) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

void loader_imgsz_range(int imgsz, double fraction, int *lo, int *hi) {
    *lo = *hi = imgsz;
    if (fraction <= 0) return;
    int a = (int)ceil(imgsz * (1.0 - fraction) / 32.0), b = (int)floor(imgsz * (1.0 + fraction) / 32.0);
    if (a < 1) a = 1;
    if (b < a) {
        int nearest = (int)lround(imgsz / 32.0);
        *lo = *hi = 32 * (nearest < 1 ? 1 : nearest);
        return;
    }
    *lo = 32 * a;
    *hi = 32 * b;
}

int loader_step_imgsz(uint64_t seed, int64_t step, int imgsz, double fraction) {
    int lo, hi;
    loader_imgsz_range(imgsz, fraction, &lo, &hi);
    if (lo == hi) return lo;
    float u = rng_uniform(rng_seed_for_name(seed, "multiscale"), (uint64_t)step);
    return lo + 32 * (int)(u * (float)((hi - lo) / 32 + 1));
}

// ---- one sample ----------------------------------------------------------------------------------

typedef struct BoxList {
    AugBox *items;
    int n, cap;
} BoxList;

static void boxes_reserve(BoxList *list, int n) {
    if (list->n + n <= list->cap) return;
    while (list->cap < list->n + n) list->cap = list->cap ? 2 * list->cap : 16;
    list->items = yp_realloc(list->items, (size_t)list->cap * sizeof *list->items);
}

static uint64_t sample_stream(uint64_t seed, int64_t epoch, int64_t index) {
    return rng_mix64(rng_mix64(rng_seed_for_name(seed, "sample") ^ (uint64_t)epoch) ^ (uint64_t)index);
}

// What one sample contributes: its image at the input size (when images are wanted), or its recipe
// and decoded images (when recipes are), and its boxes in input pixels.
typedef struct Sample {
    Image image;
    RenderRecipe recipe;  // tile offsets into `decoded`
    uint8_t *decoded;
    int64_t decoded_bytes;
    BoxList boxes;
} Sample;

// Appends sample `index`'s boxes, in pixels of its image at load size w × h.
static int append_boxes(const DatasetSplit *split, int64_t index, int w, int h, BoxList *boxes) {
    const DatasetSample *s = &split->samples[index];
    boxes_reserve(boxes, (int)s->n_boxes);
    for (int64_t k = 0; k < s->n_boxes; k++) {
        const DatasetBox *b = &split->boxes[s->first_box + k];
        boxes->items[boxes->n++] = (AugBox){.cls = b->cls,
                                            .x1 = (b->cx - b->w / 2) * (float)w,
                                            .y1 = (b->cy - b->h / 2) * (float)h,
                                            .x2 = (b->cx + b->w / 2) * (float)w,
                                            .y2 = (b->cy + b->h / 2) * (float)h};
    }
    return (int)s->n_boxes;
}

// Sample `index`'s image, decoded, at the size the scan recorded (the box geometry depends on it).
static bool decode_image(const DatasetSplit *split, int64_t index, Image *out, Error *err) {
    const DatasetSample *s = &split->samples[index];
    if (!image_read(s->image_path, out, err)) return false;
    if (out->width == s->width && out->height == s->height) return true;
    error_set(err, "%s: the image changed since the dataset was scanned (%dx%d, now %dx%d)", s->image_path, s->width,
              s->height, out->width, out->height);
    image_free(out);
    return false;
}

// Ultralytics' load_image: decoded, long side resized to imgsz.
static bool load_image(const DatasetSplit *split, int64_t index, int imgsz, Image *out, Error *err) {
    const DatasetSample *s = &split->samples[index];
    Image decoded;
    if (!decode_image(split, index, &decoded, err)) return false;
    int w, h;
    augment_load_size(s->width, s->height, imgsz, &w, &h);
    augment_resize(&decoded, w, h, out);
    image_free(&decoded);
    return true;
}

// Decodes sample `index`'s image onto the end of out->decoded for its recipe tile t, which gets its
// sizes and offset (the canvas rectangle is the caller's).
static bool decode_tile(const DatasetSplit *split, int64_t index, int imgsz, Sample *out, RenderTile *t, Error *err) {
    Image decoded;
    if (!decode_image(split, index, &decoded, err)) return false;
    int64_t bytes = (int64_t)decoded.width * decoded.height * 3;
    out->decoded = yp_realloc(out->decoded, (size_t)(out->decoded_bytes + bytes));
    memcpy(out->decoded + out->decoded_bytes, decoded.data, (size_t)bytes);
    *t = (RenderTile){.offset = out->decoded_bytes, .src_w = decoded.width, .src_h = decoded.height};
    augment_load_size(decoded.width, decoded.height, imgsz, &t->load_w, &t->load_h);
    out->decoded_bytes += bytes;
    image_free(&decoded);
    return true;
}

static bool detect_train_sample(const DatasetSplit *split, const LoaderOptions *opt, int64_t index, const BatchRequest *req,
                                Sample *out, Error *err) {
    const AugmentSettings *aug = &opt->aug;
    const bool pixels = req->parts & BATCH_PART_IMAGES, recipe = req->parts & BATCH_PART_RECIPES;
    const int s = req->imgsz;
    RenderRecipe *r = &out->recipe;
    uint64_t stream = sample_stream(opt->seed, req->epoch, index);
    Image src = {0};
    int src_w, src_h;
    if (req->mosaic && rng_uniform(stream, DRAW_MOSAIC) < aug->mosaic) {
        int64_t tiles[4] = {index};
        for (int k = 1; k < 4; k++)
            tiles[k] = (int64_t)(rng_uniform(stream, DRAW_PARTNER + k - 1) * (float)split->n_samples) % split->n_samples;
        int widths[4], heights[4];
        for (int k = 0; k < 4; k++)
            augment_load_size(split->samples[tiles[k]].width, split->samples[tiles[k]].height, s, &widths[k], &heights[k]);
        Mosaic m = augment_mosaic_layout(s, widths, heights, rng_seed_for_name(stream, "mosaic"));
        for (int k = 0; k < 4; k++) {
            int first = out->boxes.n;
            append_boxes(split, tiles[k], widths[k], heights[k], &out->boxes);
            out->boxes.n = first + augment_mosaic_boxes(&m, k, out->boxes.items + first, out->boxes.n - first);
        }
        if (pixels) {
            Image loaded[4] = {0};
            bool ok = true;
            for (int k = 0; k < 4 && ok; k++) ok = load_image(split, tiles[k], s, &loaded[k], err);
            if (ok) augment_mosaic_image(&m, loaded, &src);
            for (int k = 0; k < 4; k++) image_free(&loaded[k]);
            if (!ok) return false;
        }
        for (int k = 0; k < 4 && recipe; k++) {
            RenderTile *t = &r->tiles[k];
            if (!decode_tile(split, tiles[k], s, out, t, err)) return false;
            const MosaicTile *mt = &m.tiles[k];
            t->x1a = mt->x1a, t->y1a = mt->y1a, t->x2a = mt->x2a, t->y2a = mt->y2a, t->x1b = mt->x1b, t->y1b = mt->y1b;
        }
        r->n_tiles = 4;
        src_w = src_h = 2 * s;
    } else {
        const DatasetSample *d = &split->samples[index];
        augment_load_size(d->width, d->height, s, &src_w, &src_h);
        append_boxes(split, index, src_w, src_h, &out->boxes);
        if (pixels && !load_image(split, index, s, &src, err)) return false;
        if (recipe) {
            RenderTile *t = &r->tiles[0];
            if (!decode_tile(split, index, s, out, t, err)) return false;
            t->x2a = t->load_w, t->y2a = t->load_h;  // the whole canvas, from the image's top-left
        }
        r->n_tiles = 1;
    }
    AugWarp warp = augment_warp_draw(aug, src_w, src_h, s, s, rng_seed_for_name(stream, "perspective"));
    out->boxes.n = augment_warp_boxes(&warp, out->boxes.items, out->boxes.n);
    bool flip = rng_uniform(stream, DRAW_FLIP) < aug->fliplr;
    if (flip) augment_flip_boxes(out->boxes.items, out->boxes.n, s);
    const bool hsv = aug->hsv_h || aug->hsv_s || aug->hsv_v;  // Ultralytics skips the HSV round trip when all gains are 0
    HsvGains gains = hsv ? augment_hsv_draw(aug, rng_seed_for_name(stream, "hsv")) : (HsvGains){0};
    if (recipe) {
        r->canvas_w = src_w, r->canvas_h = src_h;
        r->warp_valid = augment_warp_inverse(&warp, r->inv);
        r->hsv = hsv, r->hsv_gain[0] = gains.h, r->hsv_gain[1] = gains.s, r->hsv_gain[2] = gains.v;
        r->flip = flip;
    }
    if (!pixels) return true;
    augment_warp_image(&src, &warp, &out->image);
    image_free(&src);
    if (hsv) augment_hsv_apply(&out->image, gains);
    if (flip) augment_flip_image(&out->image);
    return true;
}

static bool detect_val_sample(const DatasetSplit *split, int64_t index, const BatchRequest *req, Sample *out, Error *err) {
    const DatasetSample *d = &split->samples[index];
    int w, h;
    augment_load_size(d->width, d->height, req->imgsz, &w, &h);
    Letterbox lb = augment_letterbox_fit(w, h, req->imgsz, req->imgsz, false);
    int first = out->boxes.n;
    append_boxes(split, index, w, h, &out->boxes);
    augment_letterbox_boxes(&lb, out->boxes.items + first, out->boxes.n - first);
    if (!(req->parts & BATCH_PART_IMAGES)) return true;
    Image loaded;
    if (!load_image(split, index, req->imgsz, &loaded, err)) return false;
    augment_letterbox_image(&loaded, &lb, false, &out->image);
    image_free(&loaded);
    return true;
}

static bool classify_sample(const DatasetSplit *split, const LoaderOptions *opt, int64_t index, const BatchRequest *req,
                            Sample *out, Error *err) {
    if (!(req->parts & BATCH_PART_IMAGES)) return true;  // the label needs no pixels
    const DatasetSample *d = &split->samples[index];
    Image decoded;
    if (!image_read(d->image_path, &decoded, err)) return false;
    const int s = req->imgsz;
    if (!opt->augment) {
        augment_crop_resize(&decoded, augment_center_crop(decoded.width, decoded.height, s), s, s, &out->image);
        image_free(&decoded);
        return true;
    }
    const AugmentSettings *aug = &opt->aug;
    uint64_t stream = sample_stream(opt->seed, req->epoch, index);
    CropBox crop = augment_random_resized_crop(aug, decoded.width, decoded.height, rng_seed_for_name(stream, "crop"));
    augment_crop_resize(&decoded, crop, s, s, &out->image);
    image_free(&decoded);
    if (rng_uniform(stream, DRAW_FLIP) < aug->fliplr) augment_flip_image(&out->image);
    if (aug->hsv_h || aug->hsv_s || aug->hsv_v)
        augment_hsv_apply(&out->image, augment_hsv_draw(aug, rng_seed_for_name(stream, "hsv")));
    return true;
}

// ---- one batch -----------------------------------------------------------------------------------

void loader_batch_free(Batch *batch) {
    free(batch->images);
    free(batch->recipes);
    free(batch->arena);
    free(batch->targets);
    free(batch->labels);
    free(batch->indices);
    *batch = (Batch){0};
}

// The sample's bytes as image j of the batch.
static void store_image(const Image *im, uint8_t *images, int64_t j) {
    size_t bytes = (size_t)im->width * im->height * 3;
    memcpy(images + (size_t)j * bytes, im->data, bytes);
}

// The sample's recipe as image j of the batch, its decoded images appended to the batch's arena.
static void store_recipe(const Sample *sample, Batch *batch, int64_t j) {
    RenderRecipe *r = &batch->recipes[j];
    *r = sample->recipe;
    for (int k = 0; k < r->n_tiles; k++) r->tiles[k].offset += batch->arena_bytes;
    batch->arena = yp_realloc(batch->arena, (size_t)(batch->arena_bytes + sample->decoded_bytes));
    memcpy(batch->arena + batch->arena_bytes, sample->decoded, (size_t)sample->decoded_bytes);
    batch->arena_bytes += sample->decoded_bytes;
}

bool loader_build(const DatasetSplit *split, const LoaderOptions *opt, const int64_t *order, const BatchRequest *req,
                  Batch *out, Error *err) {
    YP_CHECK(req->n > 0 && req->first >= 0 && req->first + req->n <= split->n_samples && req->imgsz > 0);
    YP_CHECK(req->parts && (req->parts & ~(unsigned)(BATCH_PARTS_ALL | BATCH_PART_RECIPES)) == 0);
    const bool detect = split->task == DATASET_TASK_DETECT;
    // Recipes exist for augmented detection samples only, and replace the pixels.
    YP_CHECK(!(req->parts & BATCH_PART_RECIPES) || (detect && opt->augment && !(req->parts & BATCH_PART_IMAGES)));
    const int64_t n = req->n, s = req->imgsz;
    *out = (Batch){.n = n, .h = s, .w = s};
    out->indices = yp_malloc((size_t)n * sizeof *out->indices);
    if (req->parts & BATCH_PART_IMAGES) out->images = yp_malloc((size_t)(n * 3 * s * s) * sizeof *out->images);
    if (req->parts & BATCH_PART_RECIPES) out->recipes = yp_calloc((size_t)n, sizeof *out->recipes);
    if (!detect && (req->parts & BATCH_PART_TARGETS)) out->labels = yp_malloc((size_t)n * sizeof *out->labels);
    int n_targets = 0, cap = 0;
    bool ok = true;
    for (int64_t j = 0; j < n && ok; j++) {
        int64_t index = order[req->first + j];
        out->indices[j] = index;
        Sample sample = {0};
        if (!detect) ok = classify_sample(split, opt, index, req, &sample, err);
        else if (opt->augment) ok = detect_train_sample(split, opt, index, req, &sample, err);
        else ok = detect_val_sample(split, index, req, &sample, err);
        if (ok && out->images) store_image(&sample.image, out->images, j);
        if (ok && out->recipes) store_recipe(&sample, out, j);
        if (ok && out->labels) out->labels[j] = split->samples[index].cls;
        if (ok && detect && (req->parts & BATCH_PART_TARGETS)) {
            if (n_targets + sample.boxes.n > cap) {
                while (cap < n_targets + sample.boxes.n) cap = cap ? 2 * cap : 64;
                out->targets = yp_realloc(out->targets, (size_t)cap * sizeof *out->targets);
            }
            for (int k = 0; k < sample.boxes.n; k++) {
                const AugBox *b = &sample.boxes.items[k];
                out->targets[n_targets++] = (TargetBox){.image = (int32_t)j,
                                                        .cls = b->cls,
                                                        .cx = (b->x1 + b->x2) / 2 / (float)s,
                                                        .cy = (b->y1 + b->y2) / 2 / (float)s,
                                                        .w = (b->x2 - b->x1) / (float)s,
                                                        .h = (b->y2 - b->y1) / (float)s};
            }
        }
        image_free(&sample.image);
        free(sample.decoded);
        free(sample.boxes.items);
    }
    out->n_targets = n_targets;
    if (!ok) loader_batch_free(out);
    return ok;
}

// ---- the threaded loader -------------------------------------------------------------------------

typedef enum SlotState { SLOT_FREE, SLOT_BUSY, SLOT_READY } SlotState;

typedef struct Slot {
    SlotState state;
    int64_t batch;  // which batch of the epoch it holds
    bool ok;
    Batch data;
    Error err;
} Slot;

struct Loader {
    const DatasetSplit *split;
    LoaderOptions opt;
    int64_t n_batches;
    // The current epoch; changed only while no worker is building (n_busy == 0).
    int64_t epoch;
    bool mosaic;
    int64_t *order;  // (n_samples)
    int *imgsz;      // (n_batches)
    pthread_mutex_t mutex;
    pthread_cond_t work_cv;   // a batch may be claimed, or stopping
    pthread_cond_t ready_cv;  // a batch was finished
    int64_t next_build;       // next batch a worker claims
    int64_t next_take;        // next batch loader_next returns
    int64_t end;              // batches [next_build, end) remain to be claimed
    int n_busy;
    bool stopping;
    Slot *slots;  // (prefetch): batch b lives in slots[b % prefetch]
    pthread_t *threads;
};

static BatchRequest request_for(const Loader *ld, int64_t b) {
    const LoaderShare *share = &ld->opt.share;
    int64_t first = b * ld->opt.batch_size, left = ld->split->n_samples - first;
    int64_t n = left < ld->opt.batch_size ? left : ld->opt.batch_size;
    if (share->n) {
        YP_CHECK(share->first >= 0 && share->first + share->n <= n);
        first += share->first;
        n = share->n;
    }
    return (BatchRequest){.epoch = ld->epoch,
                          .first = first,
                          .n = n,
                          .imgsz = ld->imgsz[b],
                          .mosaic = ld->mosaic,
                          .parts = share->parts ? share->parts : BATCH_PARTS_ALL};
}

static void *loader_worker(void *arg) {
    Loader *ld = arg;
    pthread_mutex_lock(&ld->mutex);
    for (;;) {
        while (!ld->stopping && !(ld->next_build < ld->end && ld->next_build < ld->next_take + ld->opt.prefetch))
            pthread_cond_wait(&ld->work_cv, &ld->mutex);
        if (ld->stopping) break;
        int64_t b = ld->next_build++;
        Slot *slot = &ld->slots[b % ld->opt.prefetch];
        YP_CHECK(slot->state == SLOT_FREE);
        *slot = (Slot){.state = SLOT_BUSY, .batch = b};
        ld->n_busy++;
        BatchRequest req = request_for(ld, b);
        pthread_mutex_unlock(&ld->mutex);
        Batch data;
        Error err = {0};
        bool ok = loader_build(ld->split, &ld->opt, ld->order, &req, &data, &err);
        pthread_mutex_lock(&ld->mutex);
        slot->ok = ok;
        slot->data = data;
        slot->err = err;
        slot->state = SLOT_READY;
        ld->n_busy--;
        pthread_cond_broadcast(&ld->ready_cv);
    }
    pthread_mutex_unlock(&ld->mutex);
    return NULL;
}

Loader *loader_create(const DatasetSplit *split, const LoaderOptions *opt) {
    YP_CHECK(opt->batch_size > 0 && opt->n_workers >= 0 && opt->prefetch >= 1);
    Loader *ld = yp_calloc(1, sizeof *ld);
    ld->split = split;
    ld->opt = *opt;
    ld->n_batches = loader_batch_count(split->n_samples, opt->batch_size, opt->drop_last);
    ld->order = yp_malloc((size_t)split->n_samples * sizeof *ld->order);
    ld->imgsz = yp_calloc((size_t)(ld->n_batches ? ld->n_batches : 1), sizeof *ld->imgsz);
    ld->slots = yp_calloc((size_t)opt->prefetch, sizeof *ld->slots);
    YP_CHECK(pthread_mutex_init(&ld->mutex, NULL) == 0);
    YP_CHECK(pthread_cond_init(&ld->work_cv, NULL) == 0);
    YP_CHECK(pthread_cond_init(&ld->ready_cv, NULL) == 0);
    ld->threads = yp_calloc((size_t)(opt->n_workers ? opt->n_workers : 1), sizeof *ld->threads);
    for (int t = 0; t < opt->n_workers; t++) YP_CHECK(pthread_create(&ld->threads[t], NULL, loader_worker, ld) == 0);
    return ld;
}

// Frees batches built but not taken. Called with the mutex held and no worker building.
static void loader_drop_ready(Loader *ld) {
    for (int i = 0; i < ld->opt.prefetch; i++) {
        if (ld->slots[i].state == SLOT_READY) loader_batch_free(&ld->slots[i].data);
        ld->slots[i] = (Slot){0};
    }
}

void loader_destroy(Loader *ld) {
    if (!ld) return;
    pthread_mutex_lock(&ld->mutex);
    ld->stopping = true;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mutex);
    for (int t = 0; t < ld->opt.n_workers; t++) YP_CHECK(pthread_join(ld->threads[t], NULL) == 0);
    loader_drop_ready(ld);
    pthread_cond_destroy(&ld->ready_cv);
    pthread_cond_destroy(&ld->work_cv);
    pthread_mutex_destroy(&ld->mutex);
    free(ld->threads);
    free(ld->slots);
    free(ld->imgsz);
    free(ld->order);
    free(ld);
}

int64_t loader_batches(const Loader *ld) {
    return ld->n_batches;
}

void loader_start_epoch(Loader *ld, const LoaderEpoch *ep) {
    YP_CHECK(ep->first_batch >= 0 && ep->first_batch <= ld->n_batches);
    pthread_mutex_lock(&ld->mutex);
    ld->end = ld->next_build;  // no new claims; wait for the batches being built
    while (ld->n_busy > 0) pthread_cond_wait(&ld->ready_cv, &ld->mutex);
    loader_drop_ready(ld);
    ld->epoch = ep->epoch;
    ld->mosaic = ep->mosaic;
    loader_epoch_order(ld->opt.seed, ep->epoch, ld->split->n_samples, ld->opt.shuffle, ld->order);
    for (int64_t b = 0; b < ld->n_batches; b++) {
        ld->imgsz[b] = ep->imgsz_per_batch ? ep->imgsz_per_batch[b] : ep->imgsz;
        YP_CHECK(ld->imgsz[b] > 0);
    }
    ld->next_build = ld->next_take = ep->first_batch;
    ld->end = ld->n_batches;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mutex);
}

bool loader_next(Loader *ld, Batch *out, Error *err) {
    pthread_mutex_lock(&ld->mutex);
    int64_t b = ld->next_take;
    YP_CHECK(b < ld->end);
    if (ld->opt.n_workers == 0) {
        ld->next_take = ld->next_build = b + 1;
        BatchRequest req = request_for(ld, b);
        pthread_mutex_unlock(&ld->mutex);
        return loader_build(ld->split, &ld->opt, ld->order, &req, out, err);
    }
    Slot *slot = &ld->slots[b % ld->opt.prefetch];
    while (!(slot->state == SLOT_READY && slot->batch == b)) pthread_cond_wait(&ld->ready_cv, &ld->mutex);
    bool ok = slot->ok;
    *out = slot->data;  // zeroed when the build failed
    if (!ok) *err = slot->err;
    *slot = (Slot){0};
    ld->next_take = b + 1;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mutex);
    return ok;
}

bool loader_build_again(const Loader *ld, int64_t b, unsigned parts, Batch *out, Error *err) {
    YP_CHECK(b >= 0 && b < ld->n_batches);
    BatchRequest req = request_for(ld, b);
    req.parts = parts;
    return loader_build(ld->split, &ld->opt, ld->order, &req, out, err);
}

void loader_render_recipes(const Batch *batch, uint8_t *images) {
    YP_CHECK(batch->recipes && batch->h == batch->w);
    int sdiv[256], hdiv[256];
    aug_hsv_tables(sdiv, hdiv);
    const int side = (int)batch->w;
    for (int64_t i = 0; i < batch->n; i++) {
        const RenderRecipe *r = &batch->recipes[i];
        uint8_t lut[3][256];
        aug_hsv_luts(r->hsv_gain, lut);
        const uint8_t *const luts[3] = {lut[0], lut[1], lut[2]};
        uint8_t *dst = images + (size_t)i * (size_t)side * (size_t)side * 3;
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++)
                render_pixel(r, batch->arena, side, x, y, sdiv, hdiv, luts, dst + ((size_t)y * side + x) * 3);
    }
}
