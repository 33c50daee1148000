// Fuzz target: a detection dataset's label file (YOLO format, one "class cx cy w h" row per object),
// through dataset_scan, which reads and verifies it for the one image of a three-class dataset that
// LLVMFuzzerInitialize builds in the scratch directory (data.yaml, images/train/a.png).
//
// Input: the label file, labels/train/a.txt, as it is.
// Checks, beyond the sanitizers: the scan keeps the image (with boxes of classes 0..2 and
// coordinates in Ultralytics' tolerance) or skips it with a note; it fails only with "no usable
// images" as a one-line error.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/fsutil.h"
#include "framework/data/dataset.h"
#include "framework/data/image_io.h"
#include "tests/fuzz/fuzz_common.h"

enum { N_CLASSES = 3, IMAGE_SIZE = 16 };

static Dataset *dataset;  // opened once: only the label file changes between inputs

static void fail(const char *what, const Error *err) {
    fprintf(stderr, "fuzz: %s: %s\n", what, err->message);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    Error err = {0};
    if (!fs_mkdir_p(fuzz_file("images/train"), &err) || !fs_mkdir_p(fuzz_file("labels/train"), &err))
        fail("scratch dataset", &err);
    Image im;
    image_alloc(&im, IMAGE_SIZE, IMAGE_SIZE);
    memset(im.data, 128, (size_t)IMAGE_SIZE * IMAGE_SIZE * 3);
    if (!image_write_png(fuzz_file("images/train/a.png"), &im, &err)) fail("scratch image", &err);
    image_free(&im);
    static const char yaml[] = "train: images/train\nval: images/train\nnames: [a, b, c]\n";
    fuzz_write_file(fuzz_file("data.yaml"), yaml, sizeof yaml - 1);
    if (!dataset_open(fuzz_file("data.yaml"), DATASET_TASK_DETECT, &dataset, &err)) fail("scratch dataset", &err);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(fuzz_file("labels/train/a.txt"), data, size);
    DatasetSplit *split = NULL;
    Error err = {0};
    if (!dataset_scan(dataset, DATASET_SPLIT_TRAIN, 0, &split, &err)) {
        fuzz_check_error(&err);
        return 0;
    }
    if (split->n_samples != 1 || split->samples[0].n_boxes != split->n_boxes || split->n_notes) {
        fprintf(stderr, "fuzz: a kept image with %lld samples, %lld boxes, %d notes\n", (long long)split->n_samples,
                (long long)split->n_boxes, split->n_notes);
        abort();
    }
    for (int64_t i = 0; i < split->n_boxes; i++) {
        const DatasetBox *b = &split->boxes[i];
        if (b->cls < 0 || b->cls >= N_CLASSES || !(b->cx >= -0.01f && b->cx <= 1.01f) || !(b->cy >= -0.01f && b->cy <= 1.01f) ||
            !(b->w >= 0 && b->w <= 1.01f) || !(b->h >= 0 && b->h <= 1.01f)) {
            fprintf(stderr, "fuzz: kept box %lld: class %d, %g %g %g %g\n", (long long)i, b->cls, b->cx, b->cy, b->w, b->h);
            abort();
        }
    }
    dataset_split_destroy(split);
    return 0;
}
