// Dataset loading on small datasets written to a temporary folder: YAML errors with their exact
// positioned messages, Ultralytics' rules for skipping images (each named in the summary), duplicate
// label rows, image lists, the classification layout, and scans that do not depend on thread count.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/data/dataset.h"
#include "framework/core/fsutil.h"
#include "framework/data/image_io.h"
#include "tests/unit/gradcheck.h"

static char temp_dir[256];

static void make_dirs(const char *path) {
    Error err = {0};
    if (!fs_mkdir_p(path, &err)) fail_msg("%s", err.message);
}

// Writes `text` to temp_dir/rel, creating folders.
static void write_text(const char *rel, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", temp_dir, rel);
    test_write_text(path, text);
}

static void write_png(const char *rel, int width, int height) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", temp_dir, rel);
    *strrchr(path, '/') = '\0';
    make_dirs(path);
    path[strlen(path)] = '/';
    Image im;
    image_alloc(&im, width, height);
    for (int i = 0; i < width * height * 3; i++) im.data[i] = (uint8_t)(i * 7);
    Error err = {0};
    if (!image_write_png(path, &im, &err)) fail_msg("%s", err.message);
    image_free(&im);
}

static char *summary_of(const DatasetSplit *split) {
    static char buf[8192];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    dataset_split_print_summary(split, f);
    fclose(f);
    return buf;
}

// Opens temp_dir/rel for detection, scans its train split and compares the summary with `expected`
// (where each %s stands for temp_dir).
static void expect_train_summary(const char *rel, const char *expected_fmt) {
    char path[512], expected[4096];
    snprintf(path, sizeof path, "%s/%s", temp_dir, rel);
    const char *t = temp_dir;
    snprintf(expected, sizeof expected, expected_fmt, t, t, t, t, t);
    Dataset *ds;
    Error err = {0};
    if (!dataset_open(path, DATASET_TASK_DETECT, &ds, &err)) fail_msg("%s", err.message);
    DatasetSplit *split;
    if (!dataset_scan(ds, DATASET_SPLIT_TRAIN, 2, &split, &err)) fail_msg("%s", err.message);
    assert_string_equal(summary_of(split), expected);
    dataset_split_destroy(split);
    dataset_destroy(ds);
}

// Opening `rel` must fail with exactly "temp_dir/<expected>".
static void expect_open_error(const char *rel, DatasetTask task, const char *expected_fmt, ...) {
    char path[1024], expected[2048], tail[1024];
    snprintf(path, sizeof path, "%s/%s", temp_dir, rel);
    va_list ap;
    va_start(ap, expected_fmt);
    vsnprintf(tail, sizeof tail, expected_fmt, ap);
    va_end(ap);
    snprintf(expected, sizeof expected, "%s/%s", temp_dir, tail);
    Dataset *ds;
    Error err = {0};
    assert_false(dataset_open(path, task, &ds, &err));
    assert_null(ds);
    assert_string_equal(err.message, expected);
}

static void write_detect_dataset(void) {
    write_text("det/data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n");
    for (int i = 0; i < 12; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "det/images/train/img%02d.png", i);
        if (i == 6) write_text(rel, "this is no image\n");
        else write_png(rel, i == 7 ? 8 : 32, 24);
    }
    write_text("det/images/train/readme.txt", "not an image: ignored\n");
    write_text("det/labels/train/img00.txt", "0 0.5 0.5 0.2 0.2\n2 0.25 0.75 0.1 0.3\n");
    write_text("det/labels/train/img01.txt", "\xEF\xBB\xBF" "2 0.5 0.5 0.2 0.2\r\n0 0.9 0.1 0.1 0.1\r\n2 0.5 0.5 0.2 0.2\r\n");
    // img02 has no label file: kept without boxes
    write_text("det/labels/train/img03.txt", "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n");
    write_text("det/labels/train/img04.txt", "3 0.5 0.5 0.2 0.2\n");
    write_text("det/labels/train/img05.txt", "\n1 0.5 1.5 0.2 0.2\n");
    write_text("det/labels/train/img08.txt", "");
    write_text("det/labels/train/img09.txt", "1 0.5 abc 0.2 0.2\n");
    write_text("det/labels/train/img10.txt", "1.5 0.5 0.5 0.2 0.2\n");
    write_text("det/labels/train/img11.txt", "1.0 1.005 -0.005 0.01 1.01\n");  // within the 0.01 tolerance
    write_png("det/images/val/v0.png", 40, 30);
    write_png("det/images/val/v1.png", 40, 30);
    write_text("det/labels/val/v0.txt", "1 0.5 0.5 0.5 0.5\n");
}

static void test_detect_scan_and_summary(void **state) {
    (void)state;
    write_detect_dataset();
    char path[512];
    snprintf(path, sizeof path, "%s/det/data.yaml", temp_dir);
    Dataset *ds;
    Error err = {0};
    if (!dataset_open(path, DATASET_TASK_DETECT, &ds, &err)) fail_msg("%s", err.message);
    assert_int_equal(ds->nc, 3);
    assert_string_equal(ds->names[2], "c");
    assert_int_equal(ds->sources[DATASET_SPLIT_TRAIN].n_images, 12);
    assert_false(ds->sources[DATASET_SPLIT_TEST].present);

    DatasetSplit *split;
    if (!dataset_scan(ds, DATASET_SPLIT_TRAIN, 1, &split, &err)) fail_msg("%s", err.message);
    assert_int_equal(split->n_samples, 5);  // img00, img01, img02, img08, img11
    assert_int_equal(split->n_boxes, 5);
    assert_int_equal(split->n_duplicates, 1);
    assert_int_equal(split->n_unlabelled, 1);
    // Duplicate removal sorts rows as Ultralytics' np.unique does.
    const DatasetSample *s1 = &split->samples[1];
    assert_int_equal(s1->n_boxes, 2);
    assert_int_equal(split->boxes[s1->first_box].cls, 0);
    assert_int_equal(split->boxes[s1->first_box + 1].cls, 2);
    assert_int_equal(split->samples[2].n_boxes, 0);
    assert_int_equal(split->samples[4].width, 32);
    assert_true(split->boxes[split->samples[4].first_box].h == 1.01f);

    char expected[4096];
    const char *t = temp_dir;
    snprintf(expected, sizeof expected,
             "train: 5 images, 5 boxes, 7 skipped (1 unreadable image, 1 image under 10 pixels, 1 wrong field count, "
             "1 label not a number, 2 bad class id, 1 coordinates outside [0, 1]), 1 without a label file, "
             "1 duplicate label rows dropped\n"
             "  %s/det/labels/train/img03.txt:2: 4 fields, expected 5 (class cx cy w h)\n"
             "  %s/det/labels/train/img04.txt:1: class 3 is out of range: the dataset has 3 classes (0 to 2)\n"
             "  %s/det/labels/train/img05.txt:2: cy 1.5 is outside [0, 1] (coordinates are normalised)\n"
             "  %s/det/images/train/img06.png: not a PNG or JPEG file (yolopipe reads those two formats)\n"
             "  %s/det/images/train/img07.png: image size 8x24 is under 10 pixels\n"
             "  ... and 2 more skipped\n",
             t, t, t, t, t);
    assert_string_equal(summary_of(split), expected);

    // The same split with four threads.
    DatasetSplit *split4;
    if (!dataset_scan(ds, DATASET_SPLIT_TRAIN, 4, &split4, &err)) fail_msg("%s", err.message);
    assert_string_equal(summary_of(split4), expected);
    assert_int_equal(split4->n_samples, split->n_samples);
    for (int64_t i = 0; i < split->n_samples; i++) assert_string_equal(split4->samples[i].image_path, split->samples[i].image_path);
    assert_memory_equal(split4->boxes, split->boxes, (size_t)split->n_boxes * sizeof *split->boxes);
    dataset_split_destroy(split4);
    dataset_split_destroy(split);

    if (!dataset_scan(ds, DATASET_SPLIT_VAL, 2, &split, &err)) fail_msg("%s", err.message);
    assert_string_equal(summary_of(split), "val: 2 images, 1 boxes, 0 skipped, 1 without a label file\n");
    dataset_split_destroy(split);

    assert_false(dataset_scan(ds, DATASET_SPLIT_TEST, 1, &split, &err));
    dataset_destroy(ds);
}

static void test_detect_more_notes(void **state) {
    (void)state;
    // The two skips the summary above left out, through a split of their own.
    write_png("notes/images/a/img09.png", 16, 16);
    write_png("notes/images/a/img10.png", 16, 16);
    write_text("notes/labels/a/img09.txt", "1 0.5 abc 0.2 0.2\n");
    write_text("notes/labels/a/img10.txt", "1.5 0.5 0.5 0.2 0.2\n");
    write_text("notes/data.yaml", "train: images/a\nval: images/a\nnc: 2\n");
    char path[512];
    snprintf(path, sizeof path, "%s/notes/data.yaml", temp_dir);
    Dataset *ds;
    Error err = {0};
    if (!dataset_open(path, DATASET_TASK_DETECT, &ds, &err)) fail_msg("%s", err.message);
    assert_string_equal(ds->names[1], "class_1");
    DatasetSplit *split;
    assert_false(dataset_scan(ds, DATASET_SPLIT_TRAIN, 1, &split, &err));
    char expected[2048];
    snprintf(expected, sizeof expected,
             "%s/notes/data.yaml:1:8: train: no usable images: all 2 were skipped (first: "
             "%s/notes/labels/a/img09.txt:1: cy 'abc' is not a number)",
             temp_dir, temp_dir);
    assert_string_equal(err.message, expected);
    dataset_destroy(ds);

    write_text("notes/labels/a/img09.txt", "1 0.5 0.5 0.2 0.2\n");
    if (!dataset_open(path, DATASET_TASK_DETECT, &ds, &err)) fail_msg("%s", err.message);
    if (!dataset_scan(ds, DATASET_SPLIT_TRAIN, 1, &split, &err)) fail_msg("%s", err.message);
    snprintf(expected, sizeof expected,
             "train: 1 images, 1 boxes, 1 skipped (1 bad class id)\n"
             "  %s/notes/labels/a/img10.txt:1: class 1.5 is not an integer\n",
             temp_dir);
    assert_string_equal(summary_of(split), expected);
    dataset_split_destroy(split);
    dataset_destroy(ds);
}

static void test_detect_lists(void **state) {
    (void)state;
    write_png("lists/images/one/x0.png", 16, 16);
    write_png("lists/images/one/x1.jpg.png", 16, 16);
    write_png("lists/images/two/deep/y0.png", 16, 16);
    write_text("lists/labels/two/deep/y0.txt", "0 0.5 0.5 1 1\n");
    write_text("lists/sets/train.txt", "../images/one/x1.jpg.png\n./../images/two/deep/y0.png\n\nnotes.md\n");
    write_text("lists/root/data.yaml", "path: ..\ntrain: [sets/train.txt, images/one]\nval: images/two\nnames: {1: b, 0: a}\n");
    char path[512];
    snprintf(path, sizeof path, "%s/lists/root/data.yaml", temp_dir);
    Dataset *ds;
    Error err = {0};
    if (!dataset_open(path, DATASET_TASK_DETECT, &ds, &err)) fail_msg("%s", err.message);
    assert_string_equal(ds->names[0], "a");
    assert_string_equal(ds->names[1], "b");
    const DatasetSource *train = &ds->sources[DATASET_SPLIT_TRAIN];
    assert_int_equal(train->n_images, 4);  // x1 twice (listed and in the folder), as Ultralytics keeps it
    char expected[512];
    snprintf(expected, sizeof expected, "%s/lists/root/../images/one/x0.png", temp_dir);
    assert_string_equal(train->image_paths[0], expected);
    snprintf(expected, sizeof expected, "%s/lists/root/../sets/../images/two/deep/y0.png", temp_dir);
    assert_string_equal(train->image_paths[3], expected);
    snprintf(expected, sizeof expected, "%s/lists/root/data.yaml:2:8", temp_dir);
    assert_string_equal(train->where, expected);
    DatasetSplit *split;
    if (!dataset_scan(ds, DATASET_SPLIT_VAL, 1, &split, &err)) fail_msg("%s", err.message);
    assert_int_equal(split->n_boxes, 1);  // labels/two/deep/y0.txt found through the last images/ folder
    dataset_split_destroy(split);
    dataset_destroy(ds);
}

static void test_detect_yaml_errors(void **state) {
    (void)state;
    write_png("errs/images/train/a.png", 16, 16);
    write_text("errs/missing.yaml", "train: images/train\nval: images/nope\nnames: [a]\n");
    expect_open_error("errs/missing.yaml", DATASET_TASK_DETECT,
                      "errs/missing.yaml:2:6: val: 'images/nope' does not exist (no folder or image list at %s/errs/images/nope)",
                      temp_dir);
    write_text("errs/listed.yaml", "train: images/train\nval:\n  - images/train\n  - gone.txt\nnames: [a]\n");
    expect_open_error("errs/listed.yaml", DATASET_TASK_DETECT,
                      "errs/listed.yaml:4:5: val: 'gone.txt' does not exist (no folder or image list at %s/errs/gone.txt)",
                      temp_dir);
    write_text("errs/nc.yaml", "train: images/train\nval: images/train\nnames: [a, b]\nnc: 3\n");
    expect_open_error("errs/nc.yaml", DATASET_TASK_DETECT, "errs/nc.yaml:4:5: nc: 3 does not match names, which has 2 entries (line 3)");
    write_text("errs/nonames.yaml", "train: images/train\nval: images/train\n");
    expect_open_error("errs/nonames.yaml", DATASET_TASK_DETECT,
                      "errs/nonames.yaml:1:1: the dataset needs 'names:' (one name per class) or 'nc:'");
    write_text("errs/noval.yaml", "train: images/train\nnames: [a]\n");
    expect_open_error("errs/noval.yaml", DATASET_TASK_DETECT,
                      "errs/noval.yaml:1:1: val: missing; give the folder or image list of the val images");
    write_text("errs/ids.yaml", "train: images/train\nval: images/train\nnames: {0: a, 2: c}\n");
    expect_open_error("errs/ids.yaml", DATASET_TASK_DETECT,
                      "errs/ids.yaml:3:15: class id 2 is out of range: the 2 names must be numbered 0 to 1");
    write_text("errs/empty/readme.md", "no images here\n");
    write_text("errs/noimages.yaml", "train: empty\nval: images/train\nnames: [a]\n");
    expect_open_error("errs/noimages.yaml", DATASET_TASK_DETECT,
                      "errs/noimages.yaml:1:8: train: no images found (looked for .png, .jpg, .jpeg and Ultralytics' other "
                      "image extensions)");
    write_text("errs/root.yaml", "path: nowhere\ntrain: images/train\nval: images/train\nnames: [a]\n");
    expect_open_error("errs/root.yaml", DATASET_TASK_DETECT, "errs/root.yaml:1:7: path: the dataset folder %s/errs/nowhere does not exist",
                      temp_dir);
}

// Files that are not what their names say are skipped and counted, never read whole: an image and a
// label that are links to /dev/zero (an endless device: read whole, it ends the process on memory)
// and a label over the label cap (a sparse file, so the test writes nothing).
static void test_detect_files_not_regular(void **state) {
    (void)state;
    write_png("odd/images/train/a.png", 16, 16);
    write_png("odd/images/train/b.png", 16, 16);
    write_png("odd/images/train/c.png", 16, 16);
    write_png("odd/images/train/d.png", 16, 16);
    write_text("odd/labels/train/a.txt", "0 0.5 0.5 0.2 0.2\n");
    write_text("odd/data.yaml", "train: images/train\nval: images/train\nnames: [a]\n");
    char path[512], target[512];
    snprintf(path, sizeof path, "%s/odd/images/train/zero.png", temp_dir);
    assert_int_equal(symlink("/dev/zero", path), 0);
    snprintf(path, sizeof path, "%s/odd/labels/train/b.txt", temp_dir);
    assert_int_equal(symlink("/dev/zero", path), 0);
    write_text("odd/labels/train/c.txt", "");
    snprintf(target, sizeof target, "%s/odd/labels/train/c.txt", temp_dir);
    assert_int_equal(truncate(target, (off_t)2 << 20), 0);
    expect_train_summary("odd/data.yaml",
                         "train: 2 images, 1 boxes, 3 skipped (1 unreadable image, 2 unreadable label file), 1 without a "
                         "label file\n"
                         "  %s/odd/labels/train/b.txt: not a regular file (a device, FIFO or socket)\n"
                         "  %s/odd/labels/train/c.txt: larger than the 1 MiB limit for label files\n"
                         "  %s/odd/images/train/zero.png: not a regular file (a device, FIFO or socket)\n");
}

// A NUL byte in a label file once ended the file there without a word (the boxes after it were
// dropped): the image is skipped and counted as an unreadable label file, naming the line.
static void test_detect_label_nul(void **state) {
    (void)state;
    write_png("nul/images/train/a.png", 16, 16);
    write_png("nul/images/train/b.png", 16, 16);
    write_text("nul/labels/train/b.txt", "0 0.5 0.5 0.2 0.2\n");
    write_text("nul/data.yaml", "train: images/train\nval: images/train\nnames: [a]\n");
    char path[512];
    snprintf(path, sizeof path, "%s/nul/labels/train/a.txt", temp_dir);
    static const char label[] = "0 0.5 0.5 0.2 0.2\n0 0.4\0 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n";
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(label, 1, sizeof label - 1, f), sizeof label - 1);
    fclose(f);
    expect_train_summary("nul/data.yaml", "train: 1 images, 1 boxes, 1 skipped (1 unreadable label file)\n"
                                          "  %s/nul/labels/train/a.txt:2: a NUL byte: a label file is text\n");
}

static void test_classify(void **state) {
    (void)state;
    write_png("cls/train/dog/d0.png", 12, 12);
    write_png("cls/train/cat/c0.png", 12, 12);
    write_png("cls/train/cat/sub/c1.png", 12, 12);
    write_text("cls/train/cat/c2.png", "broken");
    write_png("cls/val/dog/d1.png", 12, 12);
    char path[512];
    snprintf(path, sizeof path, "%s/cls", temp_dir);
    Dataset *ds;
    Error err = {0};
    if (!dataset_open(path, DATASET_TASK_CLASSIFY, &ds, &err)) fail_msg("%s", err.message);
    assert_int_equal(ds->nc, 2);
    assert_string_equal(ds->names[0], "cat");
    assert_string_equal(ds->names[1], "dog");
    DatasetSplit *split;
    if (!dataset_scan(ds, DATASET_SPLIT_TRAIN, 2, &split, &err)) fail_msg("%s", err.message);
    assert_int_equal(split->n_samples, 3);
    assert_int_equal(split->samples[0].cls, 0);
    assert_int_equal(split->samples[2].cls, 1);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "train: 3 images in 2 classes, 1 skipped (1 unreadable image)\n"
             "  %s/cls/train/cat/c2.png: not a PNG or JPEG file (yolopipe reads those two formats)\n",
             temp_dir);
    assert_string_equal(summary_of(split), expected);
    dataset_split_destroy(split);
    dataset_destroy(ds);

    write_png("cls/val/bird/b0.png", 12, 12);
    expect_open_error("cls", DATASET_TASK_CLASSIFY, "cls/val/bird: not a class of train/ (a val class folder must also be in train/)");
    expect_open_error("det/data.yaml", DATASET_TASK_CLASSIFY,
                      "det/data.yaml: classification data is a folder with train/ and val/ class folders, not a file");
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/yp_dataset_XXXXXX");
    if (!mkdtemp(temp_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_scan_and_summary), cmocka_unit_test(test_detect_more_notes),
        cmocka_unit_test(test_detect_lists),            cmocka_unit_test(test_detect_yaml_errors),
        cmocka_unit_test(test_classify),                cmocka_unit_test(test_detect_files_not_regular),
        cmocka_unit_test(test_detect_label_nul),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    if (system(command) != 0) failed = 1;
    return failed;
}
