// The training and validation data loader: turns a scanned split (framework/data/dataset.h) into
// framework/data/batch.h Batches, decoding and augmenting ahead on background threads.
//
// What a batch holds is a pure function of (split, options, epoch, which positions of the epoch's
// order, input size, mosaic on/off): the epoch's order is a permutation seeded by (seed, epoch), and
// each sample draws its randomness from a stream keyed by (seed, epoch, dataset index). Thread count
// and timing never change a batch. loader_build is that function; the threaded Loader only runs it
// ahead of the consumer for consecutive batches of one epoch and hands them over in order.
//
// Detection, training (Ultralytics' v8_transforms): each image is loaded with its long side at the
// batch's input size s; with mosaic, it and three partners drawn uniformly from the split are tiled
// on a 2s × 2s canvas; RandomPerspective brings the result to s × s; then RandomHSV and a horizontal
// flip. (Ultralytics draws mosaic partners from a buffer of recently loaded images; a uniform draw
// over the split is its behaviour with the buffer off, and keeps batches independent of history.)
// Validation: load at s, then letterbox to s × s without enlarging.
// Classification, training: RandomResizedCrop to s × s, flip, RandomHSV (Ultralytics uses torchvision
// ColorJitter or RandAugment there; the HSV jitter is the one colour augmentation implemented).
// Validation: shorter side to s and centre crop.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/data/augment.h"
#include "framework/data/batch.h"
#include "framework/data/dataset.h"
#include "framework/core/error.h"

// A rank's part of every batch: a pipeline replica takes images [first, first + n) of each global
// batch, stage 0 only their pixels, the last stage only their targets. All zero: everything.
typedef struct LoaderShare {
    int64_t first, n;
    unsigned parts;  // BatchParts
} LoaderShare;

typedef struct LoaderOptions {
    int64_t batch_size;   // images per batch
    bool shuffle;         // epoch order a seeded permutation, else dataset order
    bool augment;         // training augmentation, else the validation transform
    bool drop_last;       // leave out a last, partial batch
    uint64_t seed;
    int n_workers;        // background threads; 0 builds each batch inside loader_next
    int prefetch;         // batches built ahead at most, >= 1
    AugmentSettings aug;  // used when augment is set
    LoaderShare share;    // the threaded loader's batches are this share of each batch
} LoaderOptions;

// Training: shuffled, augmented with Ultralytics' defaults, last partial batch dropped, 2 workers,
// 4 batches ahead.
LoaderOptions loader_options_train(int64_t batch_size, uint64_t seed);
// Validation: dataset order, no augmentation, last partial batch kept, 2 workers, 4 batches ahead.
LoaderOptions loader_options_val(int64_t batch_size);

// ---- pure functions: every rank computes the same without talking --------------------------------

int64_t loader_batch_count(int64_t n_samples, int64_t batch_size, bool drop_last);

// order[p] = the dataset index at position p of epoch `epoch` (n entries; identity without shuffle).
void loader_epoch_order(uint64_t seed, int64_t epoch, int64_t n, bool shuffle, int64_t *order);

// The multi-scale input size of global step `step`: uniform over the multiples of 32 within
// imgsz · (1 ± fraction), and at least 32 (the nearest multiple of 32 when that range holds none);
// imgsz itself when fraction is 0.
int loader_step_imgsz(uint64_t seed, int64_t step, int imgsz, double fraction);
// The smallest and largest size loader_step_imgsz can return (both imgsz when fraction is 0).
void loader_imgsz_range(int imgsz, double fraction, int *lo, int *hi);

// BATCH_PART_RECIPES: detection training images as recipes for the backend to render
// (kernels/augment_render.h) instead of pixels; other batches give pixels for it.
typedef enum BatchParts {
    BATCH_PART_IMAGES = 1,
    BATCH_PART_TARGETS = 2,
    BATCH_PARTS_ALL = 3,
    BATCH_PART_RECIPES = 4,
} BatchParts;

// One batch, or one replica's share of a global batch: positions [first, first + n) of the epoch's
// order. A pipeline's first stage asks for images, its last for targets (labels) only, which needs
// no decoding: box geometry comes from the image sizes the scan recorded.
typedef struct BatchRequest {
    int64_t epoch;
    int64_t first, n;
    int imgsz;           // square network input, a multiple of 32 in practice
    bool mosaic;         // detection training: this epoch mixes mosaics (close_mosaic turns it off)
    unsigned parts;      // BatchParts
} BatchRequest;

// Builds the batch `req` names. order: the epoch's order (loader_epoch_order). Fills *out (the caller
// frees it with loader_batch_free); the parts not requested are left NULL. Fails, with "path:
// message", only when an image that scanned well cannot be read now.
bool loader_build(const DatasetSplit *split, const LoaderOptions *opt, const int64_t *order, const BatchRequest *req,
                  Batch *out, Error *err);

void loader_batch_free(Batch *batch);  // frees what *batch owns and zeroes it

// ---- the threaded loader -------------------------------------------------------------------------

typedef struct Loader Loader;

// split is borrowed and must outlive the loader. Starts opt->n_workers threads, idle until an epoch
// starts.
Loader *loader_create(const DatasetSplit *split, const LoaderOptions *opt);
void loader_destroy(Loader *ld);  // accepts NULL; stops the threads

int64_t loader_batches(const Loader *ld);  // batches per epoch

typedef struct LoaderEpoch {
    int64_t epoch;
    int64_t first_batch;          // resume mid-epoch: the first batch loader_next returns
    bool mosaic;
    int imgsz;                    // input size of every batch, unless imgsz_per_batch is given
    const int *imgsz_per_batch;   // borrowed for the call (copied): loader_batches() sizes, or NULL
} LoaderEpoch;

// Begins an epoch; batches first_batch, first_batch + 1, ... are built ahead. Any batch of an
// earlier epoch not yet taken is discarded.
void loader_start_epoch(Loader *ld, const LoaderEpoch *ep);

// The epoch's next batch, in order (the caller frees it with loader_batch_free). False, with err
// set, when it could not be built. Calling it after the epoch's last batch is a programming error.
bool loader_next(Loader *ld, Batch *out, Error *err);

// Batch b of the epoch loader_start_epoch last began, built again on the calling thread (the
// consumer's) with `parts` instead of the share's: the same pure function, so the same bytes. The
// pictures of the first training batches take from it the targets of a batch whose pixels this rank
// loaded (a pipeline's first stage loads no targets).
bool loader_build_again(const Loader *ld, int64_t b, unsigned parts, Batch *out, Error *err);

// The bytes a backend renders from batch->recipes (kernels/augment_render.h's render_pixel, the
// function the CPU and CUDA backends run), computed on the host into images (n, h, w, 3).
void loader_render_recipes(const Batch *batch, uint8_t *images);
