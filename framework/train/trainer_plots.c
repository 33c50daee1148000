// The run directory's JPEGs, with Ultralytics' names and content (ultralytics/utils/plotting.py
// plot_images and plot_labels; engine/trainer.py and models/yolo/detect/{train,val}.py say when):
//   labels.jpg                          once per new run, detection: what the training labels hold
//   train_batch0.jpg .. train_batch2.jpg the run's first three training batches as the loader built
//                                        them (augmented mosaics), with their boxes and class names;
//                                        with close_mosaic, also the first three after it closes
//                                        (train_batch<i>.jpg, i the iteration, as Ultralytics' plot_idx)
//   val_batch<b>_labels.jpg, _pred.jpg  validation batches 0..2 at every validation (overwritten):
//                                        ground truth, and detections above conf 0.25 (classification:
//                                        the true class, and the top-1 class with its probability)
// World rank 0 draws and writes them all, and only with output.plots. A picture that cannot be
// written is one warning line; the run goes on.
//
// Who has the pixels: world rank 0 is pipeline rank 0 of replica 0 in every rank order
// (partition/placement.h), so its loader holds the images (or the recipes a backend renders) of
// replica 0's share of every training batch, the share Ultralytics' rank 0 plots. When it does not
// also hold the last stage, its batch has no targets: it builds them again with
// loader_build_again, the same pure function (boxes need no decoding). Validation batches come
// from trainer_score, which loads the images of the pictured ones beside their targets.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "framework/eval/draw.h"
#include "framework/eval/label_plot.h"
#include "framework/train/trainer_internal.h"

enum { PLOT_BATCHES = 3, PLOT_JPEG_QUALITY = 95 };
static const float PLOT_PRED_CONF = 0.25f;  // plot_images' conf_thres

static bool plots_on(const Trainer *t) { return t->lead && t->cfg->output.plots && t->run_dir[0]; }

static const char *const *plot_names(const Trainer *t) { return (const char *const *)t->dataset->names; }

// Writes <run_dir>/<name>; a failure is a warning line.
static void plot_write(Trainer *t, const char *name, const Image *im) {
    char path[PATH_MAX];
    Error err = {0};
    if (!path_format(path, sizeof path, &err, "%s/%s", t->run_dir, name) ||
        !image_write_jpeg(path, im, PLOT_JPEG_QUALITY, &err))
        fprintf(t->out, "warning: picture not written: %s\n", err.message);
}

void trainer_plot_labels(Trainer *t) {
    if (!plots_on(t) || t->classify) return;  // Ultralytics plots labels for detection only
    const DatasetSplit *split = t->splits[DATASET_SPLIT_TRAIN];
    Image im;
    label_plot_draw(split->boxes, split->n_boxes, plot_names(t), t->dataset->nc, &im);
    plot_write(t, "labels.jpg", &im);
    image_free(&im);
}

// The file name part of a path, for a tile's title.
static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

// The tiles of a batch whose images are `pixels` (n, h, w, 3): every image's ground-truth boxes
// (detection, from targets) or class (classification, from labels), or, with `d`, its detections above
// 0.25, or, with class_scores, its top-1 class and probability. Draws and writes `name`.
// Tiles are titled with their file names (split: where the batch's indices point).
static void plot_batch(Trainer *t, const char *name, const DatasetSplit *split, const Batch *batch,
                       const uint8_t *pixels, const Detections *d, const float *class_scores) {
    int n = batch->n < DRAW_GRID_MAX_TILES ? (int)batch->n : DRAW_GRID_MAX_TILES;
    Image *images = yp_calloc((size_t)n, sizeof *images);
    DrawTile *tiles = yp_calloc((size_t)n, sizeof *tiles);
    int64_t cap = (d ? n * d->max_det : batch->n_targets) + 1;
    DrawBox *boxes = yp_malloc((size_t)cap * sizeof *boxes), *next = boxes;
    const float w = (float)batch->w, h = (float)batch->h;
    int64_t nc = t->spec->nc;
    for (int i = 0; i < n; i++) {
        images[i] = (Image){.width = (int)batch->w, .height = (int)batch->h,
                            .data = (uint8_t *)pixels + (size_t)i * (size_t)(batch->w * batch->h * 3)};
        tiles[i] = (DrawTile){.image = &images[i], .boxes = next, .cls = -1, .conf = -1};
        if (batch->indices) tiles[i].title = base_name(split->samples[batch->indices[i]].image_path);
        if (d) {
            for (int64_t j = 0; j < d->count[i]; j++) {
                int64_t at = i * d->max_det + j;
                if (d->scores[at] <= PLOT_PRED_CONF) continue;
                const float *b = d->boxes + at * 4;
                *next++ = (DrawBox){b[0], b[1], b[2], b[3], d->cls[at], d->scores[at]};
            }
        } else if (class_scores) {
            const float *s = class_scores + (size_t)i * (size_t)nc;
            int64_t top = 0;
            for (int64_t k = 1; k < nc; k++) top = s[k] > s[top] ? k : top;
            double sum = 0;  // the logits' softmax at the top class: Ultralytics shows probabilities
            for (int64_t k = 0; k < nc; k++) sum += exp((double)s[k] - s[top]);
            tiles[i].cls = (int32_t)top;
            tiles[i].conf = (float)(1.0 / sum);
        } else if (batch->labels) {
            tiles[i].cls = batch->labels[i];
        } else {
            for (int k = 0; k < batch->n_targets; k++) {
                const TargetBox *tb = &batch->targets[k];
                if (tb->image != i) continue;
                *next++ = (DrawBox){(tb->cx - tb->w / 2) * w, (tb->cy - tb->h / 2) * h, (tb->cx + tb->w / 2) * w,
                                    (tb->cy + tb->h / 2) * h, tb->cls, -1};
            }
        }
        tiles[i].n_boxes = (int)(next - tiles[i].boxes);
    }
    Image grid;
    draw_grid(tiles, n, plot_names(t), nc, &grid);
    plot_write(t, name, &grid);
    image_free(&grid);
    free(boxes);
    free(tiles);
    free(images);
}

// Whether iteration i is one of the first three of the run or of the epochs without mosaic.
static bool plot_iteration(const Trainer *t, int64_t i) {
    const TrainConfig *tc = &t->cfg->train;
    int64_t closed = (tc->epochs - tc->close_mosaic) * t->batches_per_epoch;
    return i < PLOT_BATCHES || (tc->close_mosaic > 0 && i >= closed && i < closed + PLOT_BATCHES);
}

void trainer_plot_train_batch(Trainer *t, const Batch *batch) {
    if (!plots_on(t) || !plot_iteration(t, t->at.iteration) || !t->train_loader) return;
    // The targets of this very batch when the rank does not load them (see the top of the file).
    Batch again = {0};
    const Batch *labelled = batch;
    if (!batch->targets && !batch->labels) {
        Error err = {0};
        if (!loader_build_again(t->train_loader, t->at.batch, BATCH_PART_TARGETS, &again, &err)) {
            fprintf(t->out, "warning: picture not written: %s\n", err.message);
            return;
        }
        labelled = &again;
    }
    uint8_t *rendered = NULL;
    const uint8_t *pixels = batch->images;
    if (!pixels && batch->recipes) {  // what the backend computed from the recipes, rendered here
        rendered = yp_malloc((size_t)(batch->n * batch->h * batch->w * 3));
        loader_render_recipes(batch, rendered);
        pixels = rendered;
    }
    if (pixels) {
        char name[64];
        snprintf(name, sizeof name, "train_batch%lld.jpg", (long long)t->at.iteration);
        Batch view = *labelled;
        view.indices = batch->indices;
        plot_batch(t, name, t->splits[DATASET_SPLIT_TRAIN], &view, pixels, NULL, NULL);
    }
    free(rendered);
    loader_batch_free(&again);
}

bool trainer_plots_val_batch(const Trainer *t, int64_t b) { return plots_on(t) && b < PLOT_BATCHES; }

void trainer_plot_val_batch(Trainer *t, int64_t b, const Batch *batch, const float *class_scores) {
    if (!trainer_plots_val_batch(t, b) || !batch->images) return;
    const DatasetSplit *split = t->splits[DATASET_SPLIT_VAL];
    char name[64];
    snprintf(name, sizeof name, "val_batch%lld_labels.jpg", (long long)b);
    plot_batch(t, name, split, batch, batch->images, NULL, NULL);
    snprintf(name, sizeof name, "val_batch%lld_pred.jpg", (long long)b);
    plot_batch(t, name, split, batch, batch->images, t->classify ? NULL : t->detections, class_scores);
}
