// The loader on a small detection dataset and a small classification dataset written to a temporary
// folder: batches identical whatever the worker count and timing, resuming at batch k, validation
// order and the last partial batch, per-batch input sizes, multi-scale draws, targets-only batches,
// and a read error surfacing as an Error.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/core/fsutil.h"
#include "framework/data/image_io.h"
#include "framework/data/loader.h"
#include "kernels/cpu/cpu_backend.h"
#include "framework/core/rng.h"

enum { N_IMAGES = 23, BATCH = 5 };

static char temp_dir[256];
static Dataset *detect_ds, *classify_ds;
static DatasetSplit *detect_train, *classify_train;

static void make_dirs(const char *path) {
    Error err = {0};
    if (!fs_mkdir_p(path, &err)) fail_msg("%s", err.message);
}

// An image of varying size with a coloured square; returns the square as a label line.
static void write_sample(const char *image_path, const char *label_path, int i) {
    int w = 40 + (i * 13) % 50, h = 30 + (i * 29) % 60, side = 8 + i % 12;
    int x0 = (i * 7) % (w - side), y0 = (i * 11) % (h - side);
    Image im;
    image_alloc(&im, w, h);
    // A textured background, so that resampling has something to interpolate.
    for (int p = 0; p < w * h; p++)
        for (int c = 0; c < 3; c++) im.data[3 * p + c] = (uint8_t)(60 + i + 7 * (p % w) + 5 * (p / w) + 40 * c);
    for (int y = y0; y < y0 + side; y++)
        for (int x = x0; x < x0 + side; x++) {
            uint8_t *px = im.data + ((size_t)y * w + x) * 3;
            px[0] = 250, px[1] = (uint8_t)(20 * (i % 3)), px[2] = 30;
        }
    Error err = {0};
    if (!image_write_png(image_path, &im, &err)) fail_msg("%s", err.message);
    image_free(&im);
    if (!label_path) return;
    FILE *f = fopen(label_path, "w");
    fprintf(f, "%d %.6f %.6f %.6f %.6f\n", i % 3, (x0 + side / 2.0) / w, (y0 + side / 2.0) / h, (double)side / w, (double)side / h);
    if (i % 4 == 0) fprintf(f, "%d 0.5 0.5 0.9 0.8\n", (i + 1) % 3);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(temp_dir, sizeof temp_dir, "/tmp/yp_loader_XXXXXX");
    if (!mkdtemp(temp_dir)) return -1;
    char path[1024], label[1024];
    snprintf(path, sizeof path, "%s/det/images/train", temp_dir);
    make_dirs(path);
    snprintf(path, sizeof path, "%s/det/labels/train", temp_dir);
    make_dirs(path);
    for (int i = 0; i < N_IMAGES; i++) {
        snprintf(path, sizeof path, "%s/det/images/train/%03d.png", temp_dir, i);
        snprintf(label, sizeof label, "%s/det/labels/train/%03d.txt", temp_dir, i);
        write_sample(path, label, i);
    }
    snprintf(path, sizeof path, "%s/det/data.yaml", temp_dir);
    FILE *f = fopen(path, "w");
    fputs("train: images/train\nval: images/train\nnames: [a, b, c]\n", f);
    fclose(f);
    Error err = {0};
    if (!dataset_open(path, DATASET_TASK_DETECT, &detect_ds, &err) ||
        !dataset_scan(detect_ds, DATASET_SPLIT_TRAIN, 2, &detect_train, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    for (int i = 0; i < 12; i++) {
        snprintf(path, sizeof path, "%s/cls/%s/%s", temp_dir, i < 9 ? "train" : "val", i % 2 ? "odd" : "even");
        make_dirs(path);
        snprintf(path + strlen(path), sizeof path - strlen(path), "/%02d.png", i);
        write_sample(path, NULL, i);
    }
    snprintf(path, sizeof path, "%s/cls", temp_dir);
    if (!dataset_open(path, DATASET_TASK_CLASSIFY, &classify_ds, &err) ||
        !dataset_scan(classify_ds, DATASET_SPLIT_TRAIN, 1, &classify_train, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    dataset_split_destroy(detect_train);
    dataset_split_destroy(classify_train);
    dataset_destroy(detect_ds);
    dataset_destroy(classify_ds);
    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    return system(command) == 0 ? 0 : -1;
}

static void assert_batches_equal(const Batch *a, const Batch *b) {
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->h, b->h);
    assert_int_equal(a->w, b->w);
    assert_memory_equal(a->indices, b->indices, (size_t)a->n * sizeof *a->indices);
    assert_int_equal(a->n_targets, b->n_targets);
    if (a->n_targets) assert_memory_equal(a->targets, b->targets, (size_t)a->n_targets * sizeof *a->targets);
    assert_int_equal(a->labels != NULL, b->labels != NULL);
    if (a->labels) assert_memory_equal(a->labels, b->labels, (size_t)a->n * sizeof *a->labels);
    assert_int_equal(a->images != NULL, b->images != NULL);
    if (a->images) assert_memory_equal(a->images, b->images, (size_t)(a->n * 3 * a->h * a->w) * sizeof *a->images);
}

// One epoch through a loader; the consumer optionally sleeps a random while between batches.
static int64_t run_epoch(const DatasetSplit *split, const LoaderOptions *opt, const LoaderEpoch *ep, Batch *out,
                         bool jitter) {
    Loader *ld = loader_create(split, opt);
    loader_start_epoch(ld, ep);
    int64_t n = loader_batches(ld) - ep->first_batch;
    for (int64_t b = 0; b < n; b++) {
        if (jitter) usleep((useconds_t)(rng_uniform(99, (uint64_t)b) * 3000));
        Error err = {0};
        if (!loader_next(ld, &out[b], &err)) fail_msg("%s", err.message);
    }
    loader_destroy(ld);
    return n;
}

static void free_batches(Batch *batches, int64_t n) {
    for (int64_t i = 0; i < n; i++) loader_batch_free(&batches[i]);
}

static void test_same_batches_whatever_the_threads(void **state) {
    (void)state;
    LoaderOptions opt = loader_options_train(BATCH, 42);
    assert_int_equal(loader_batch_count(N_IMAGES, BATCH, true), 4);
    Batch ref[4], other[4];
    for (int64_t epoch = 0; epoch < 2; epoch++) {
        LoaderEpoch ep = {.epoch = epoch, .mosaic = true, .imgsz = 64};
        opt.n_workers = 1;
        assert_int_equal(run_epoch(detect_train, &opt, &ep, ref, false), 4);
        static const struct {
            int workers, prefetch;
            bool jitter;
        } runs[] = {{4, 4, false}, {4, 2, true}, {0, 1, false}, {3, 7, true}};
        for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
            opt.n_workers = runs[r].workers;
            opt.prefetch = runs[r].prefetch;
            run_epoch(detect_train, &opt, &ep, other, runs[r].jitter);
            for (int b = 0; b < 4; b++) assert_batches_equal(&ref[b], &other[b]);
            free_batches(other, 4);
        }
        // Every batch is what the pure function builds for it.
        int64_t order[N_IMAGES];
        loader_epoch_order(42, epoch, N_IMAGES, true, order);
        BatchRequest req = {.epoch = epoch, .first = 2 * BATCH, .n = BATCH, .imgsz = 64, .mosaic = true, .parts = BATCH_PARTS_ALL};
        Batch direct;
        Error err = {0};
        assert_true(loader_build(detect_train, &opt, order, &req, &direct, &err));
        assert_batches_equal(&ref[2], &direct);
        loader_batch_free(&direct);
        // Targets sit inside the image, grouped by image in order.
        for (int b = 0; b < 4; b++) {
            assert_int_equal(ref[b].n, BATCH);
            assert_null(ref[b].labels);
            for (int t = 0; t < ref[b].n_targets; t++) {
                const TargetBox *tb = &ref[b].targets[t];
                assert_true(tb->image >= 0 && tb->image < BATCH && (t == 0 || tb->image >= ref[b].targets[t - 1].image));
                assert_true(tb->cx - tb->w / 2 >= -1e-6f && tb->cx + tb->w / 2 <= 1 + 1e-6f && tb->w > 0);
                assert_true(tb->cy - tb->h / 2 >= -1e-6f && tb->cy + tb->h / 2 <= 1 + 1e-6f && tb->h > 0);
                assert_true(tb->cls >= 0 && tb->cls < 3);
            }
        }
        free_batches(ref, 4);
    }
}

static void test_epoch_order(void **state) {
    (void)state;
    int64_t a[N_IMAGES], b[N_IMAGES], c[N_IMAGES];
    loader_epoch_order(5, 0, N_IMAGES, true, a);
    loader_epoch_order(5, 0, N_IMAGES, true, b);
    loader_epoch_order(5, 1, N_IMAGES, true, c);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    int seen[N_IMAGES] = {0};
    for (int i = 0; i < N_IMAGES; i++) seen[a[i]]++;
    for (int i = 0; i < N_IMAGES; i++) assert_int_equal(seen[i], 1);
    loader_epoch_order(5, 3, N_IMAGES, false, a);
    for (int i = 0; i < N_IMAGES; i++) assert_int_equal(a[i], i);
}

static void test_resume_mid_epoch(void **state) {
    (void)state;
    LoaderOptions opt = loader_options_train(BATCH, 7);
    LoaderEpoch ep = {.epoch = 3, .mosaic = true, .imgsz = 64};
    Batch full[4], resumed[4];
    run_epoch(detect_train, &opt, &ep, full, false);
    for (int k = 1; k < 4; k++) {
        ep.first_batch = k;
        assert_int_equal(run_epoch(detect_train, &opt, &ep, resumed, false), 4 - k);
        for (int b = 0; b < 4 - k; b++) assert_batches_equal(&full[k + b], &resumed[b]);
        free_batches(resumed, 4 - k);
    }
    free_batches(full, 4);
}

static void test_validation_order_and_last_batch(void **state) {
    (void)state;
    LoaderOptions opt = loader_options_val(BATCH);
    LoaderEpoch ep = {.epoch = 9, .mosaic = true, .imgsz = 96};
    Batch batches[5];
    assert_int_equal(run_epoch(detect_train, &opt, &ep, batches, false), 5);
    for (int b = 0; b < 5; b++) {
        assert_int_equal(batches[b].n, b < 4 ? BATCH : 3);
        for (int j = 0; j < batches[b].n; j++) assert_int_equal(batches[b].indices[j], b * BATCH + j);
    }
    // Validation is letterbox only: image 0 (40 x 30, one square box) fits 96 x 72, 12 rows of padding
    // above; its box keeps its place scaled by 2.4.
    const DatasetSample *s0 = &detect_train->samples[0];
    assert_int_equal(s0->width, 40);
    const DatasetBox *box = &detect_train->boxes[s0->first_box];
    const TargetBox *t = &batches[0].targets[0];
    assert_int_equal(t->image, 0);
    assert_float_equal(t->cx, box->cx, 1e-5);
    assert_float_equal(t->w, box->w, 1e-5);
    assert_float_equal(t->cy, (box->cy * 72 + 12) / 96, 1e-5);
    assert_float_equal(t->h, box->h * 72 / 96, 1e-5);
    for (int c = 0; c < 3; c++) assert_int_equal(batches[0].images[c], 114);  // top-left: padding
    free_batches(batches, 5);
}

static void test_per_batch_sizes_and_multiscale(void **state) {
    (void)state;
    // A multi-scale draw is a multiple of 32 within imgsz · (1 ± fraction), reproducible, and varied.
    int seen[64] = {0};
    for (int64_t step = 0; step < 2000; step++) {
        int s = loader_step_imgsz(3, step, 640, 0.5);
        assert_int_equal(s % 32, 0);
        assert_true(s >= 320 && s <= 960);
        assert_int_equal(s, loader_step_imgsz(3, step, 640, 0.5));
        seen[s / 32]++;
    }
    for (int k = 10; k <= 30; k++) assert_true(seen[k] > 0);  // all 21 sizes drawn
    assert_int_equal(loader_step_imgsz(3, 5, 320, 0.0), 320);
    for (int64_t step = 0; step < 100; step++) {
        int s = loader_step_imgsz(1, step, 40, 0.3);  // 28 .. 52: only 32
        assert_int_equal(s, 32);
        assert_int_equal(loader_step_imgsz(1, step, 20, 0.1), 32);  // none in range: at least 32
    }

    LoaderOptions opt = loader_options_train(BATCH, 11);
    int sizes[4];
    for (int b = 0; b < 4; b++) sizes[b] = loader_step_imgsz(11, 100 + b, 64, 0.5);
    LoaderEpoch ep = {.epoch = 0, .mosaic = true, .imgsz_per_batch = sizes};
    Batch batches[4];
    run_epoch(detect_train, &opt, &ep, batches, false);
    for (int b = 0; b < 4; b++) {
        assert_int_equal(batches[b].h, sizes[b]);
        assert_int_equal(batches[b].w, sizes[b]);
    }
    free_batches(batches, 4);
}

static void test_targets_only_and_close_mosaic(void **state) {
    (void)state;
    LoaderOptions opt = loader_options_train(BATCH, 5);
    int64_t order[N_IMAGES];
    loader_epoch_order(5, 1, N_IMAGES, true, order);
    for (int mosaic = 0; mosaic < 2; mosaic++) {
        BatchRequest req = {.epoch = 1, .first = 5, .n = 7, .imgsz = 64, .mosaic = mosaic, .parts = BATCH_PARTS_ALL};
        Batch full, targets, images;
        Error err = {0};
        assert_true(loader_build(detect_train, &opt, order, &req, &full, &err));
        req.parts = BATCH_PART_TARGETS;
        assert_true(loader_build(detect_train, &opt, order, &req, &targets, &err));
        req.parts = BATCH_PART_IMAGES;
        assert_true(loader_build(detect_train, &opt, order, &req, &images, &err));
        assert_null(targets.images);
        assert_int_equal(targets.n_targets, full.n_targets);
        assert_memory_equal(targets.targets, full.targets, (size_t)full.n_targets * sizeof *full.targets);
        assert_memory_equal(targets.indices, full.indices, 7 * sizeof *full.indices);
        assert_int_equal(images.n_targets, 0);
        assert_memory_equal(images.images, full.images, 7 * 3 * 64 * 64 * sizeof *full.images);
        // Without mosaic each image holds its own objects only: at most two boxes each.
        if (!mosaic)
            for (int j = 0; j < 7; j++) {
                int n = 0;
                for (int t = 0; t < full.n_targets; t++) n += full.targets[t].image == j;
                assert_true(n <= 2);
            }
        loader_batch_free(&full);
        loader_batch_free(&targets);
        loader_batch_free(&images);
    }
}

// A backend rendering the recipes (kernels/augment_render.h) gives, byte for byte, the host
// loader's images: mosaic and single images, resized up and down, rotated, sheared, in perspective,
// HSV-jittered and flipped.
static void test_recipes_render_the_host_images(void **state) {
    (void)state;
    LoaderOptions opt = loader_options_train(BATCH, 7);
    opt.aug.degrees = 10, opt.aug.shear = 5, opt.aug.perspective = 0.0005;
    int64_t order[N_IMAGES];
    loader_epoch_order(7, 2, N_IMAGES, true, order);
    Backend *be = cpu_backend_create(DTYPE_F32);
    for (int mosaic = 0; mosaic < 2; mosaic++) {
        BatchRequest req = {.epoch = 2, .first = 3, .n = 8, .imgsz = 96, .mosaic = mosaic, .parts = BATCH_PART_IMAGES};
        Batch host, recipes;
        Error err = {0};
        assert_true(loader_build(detect_train, &opt, order, &req, &host, &err));
        req.parts = BATCH_PART_RECIPES;
        assert_true(loader_build(detect_train, &opt, order, &req, &recipes, &err));
        assert_null(recipes.images);
        assert_non_null(recipes.recipes);
        int64_t elems = 8 * 3 * 96 * 96, arena = 0;
        for (int j = 0; j < 8; j++) {
            assert_int_equal(recipes.recipes[j].n_tiles, mosaic ? 4 : 1);
            assert_int_equal(recipes.recipes[j].tiles[0].offset, arena);
            arena += render_recipe_bytes(&recipes.recipes[j]);
        }
        assert_int_equal(recipes.arena_bytes, arena);
        float *want = malloc((size_t)elems * sizeof *want), *got = malloc((size_t)elems * sizeof *got);
        be->ops->upload_images(be, want, host.images, 8, 96, 96);
        // Two calls, as two micro-batches would: the second's recipes start inside the arena.
        be->ops->render_images(be, got, recipes.recipes, 5, recipes.arena, 96);
        be->ops->render_images(be, got + 5 * 3 * 96 * 96, recipes.recipes + 5, 3, recipes.arena, 96);
        assert_memory_equal(got, want, (size_t)elems * sizeof *got);
        free(want);
        free(got);
        loader_batch_free(&host);
        loader_batch_free(&recipes);
    }
    backend_destroy(be);
}

static void test_classification(void **state) {
    (void)state;
    assert_int_equal(classify_train->n_samples, 9);
    LoaderOptions opt = loader_options_train(4, 1);
    LoaderEpoch ep = {.epoch = 0, .imgsz = 32};
    Batch batches[2], again[2];
    assert_int_equal(run_epoch(classify_train, &opt, &ep, batches, false), 2);
    opt.n_workers = 3;
    run_epoch(classify_train, &opt, &ep, again, true);
    for (int b = 0; b < 2; b++) {
        assert_batches_equal(&batches[b], &again[b]);
        assert_null(batches[b].targets);
        for (int j = 0; j < 4; j++)
            assert_int_equal(batches[b].labels[j], classify_train->samples[batches[b].indices[j]].cls);
    }
    free_batches(again, 2);
    free_batches(batches, 2);
    opt = loader_options_val(4);
    Batch val[3];
    assert_int_equal(run_epoch(classify_train, &opt, &ep, val, false), 3);
    assert_int_equal(val[2].n, 1);
    free_batches(val, 3);
}

static void test_read_error(void **state) {
    (void)state;
    // A file that changes after the scan fails its batch with a message naming it; the loader goes on.
    char path[1024];
    snprintf(path, sizeof path, "%s/det/images/train/004.png", temp_dir);
    FILE *f = fopen(path, "w");
    fputs("gone", f);
    fclose(f);
    LoaderOptions opt = loader_options_val(BATCH);
    Loader *ld = loader_create(detect_train, &opt);
    loader_start_epoch(ld, &(LoaderEpoch){.imgsz = 64});
    Batch batch;
    Error err = {0};
    assert_false(loader_next(ld, &batch, &err));
    assert_null(batch.images);
    char expected[1200];
    snprintf(expected, sizeof expected, "%s: not a PNG or JPEG file (yolopipe reads those two formats)", path);
    assert_string_equal(err.message, expected);
    assert_true(loader_next(ld, &batch, &err));
    assert_int_equal(batch.indices[0], 5);
    loader_batch_free(&batch);
    loader_destroy(ld);  // with batches still built ahead
    write_sample(path, NULL, 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_batches_whatever_the_threads),
        cmocka_unit_test(test_epoch_order),
        cmocka_unit_test(test_resume_mid_epoch),
        cmocka_unit_test(test_validation_order_and_last_batch),
        cmocka_unit_test(test_per_batch_sizes_and_multiscale),
        cmocka_unit_test(test_targets_only_and_close_mosaic),
        cmocka_unit_test(test_recipes_render_the_host_images),
        cmocka_unit_test(test_classification),
        cmocka_unit_test(test_read_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
