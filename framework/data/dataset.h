// Datasets in Ultralytics' layouts, in two steps: dataset_open reads the description and lists each
// split's image files (cheap; every error is positioned); dataset_scan verifies one split's images
// and labels (decodes every image), dropping and counting what Ultralytics would ignore.
//
// Detection: `data` is a dataset YAML:
//   path: ../datasets/shapes   # root; relative to the YAML's folder (the folder itself when absent)
//   train: images/train        # relative to the root: a folder of images (searched recursively),
//   val: [images/val, more.txt] #   a .txt list of image paths, or a list of those
//   test:                      # optional
//   names: [circle, square]    # or {0: circle, 1: square}; `nc`, when given, must agree
// An image's labels are in the file named by replacing its last "images" folder with "labels" and
// its extension with ".txt": one "class cx cy w h" row per object, normalised to [0, 1]. A missing
// label file means an image without objects.
// Classification: `data` is a folder with train/<class>/*.{png,jpg} and val/<class>/..., optional
// test/; the class names are train's sub-folders, sorted; class ids follow that order.
//
// Differences from Ultralytics, deliberate: relative lines of a .txt list are relative to the list's
// folder (Ultralytics resolves only "./" lines there, others against the working directory); val
// class folders must be among train's (Ultralytics numbers each split's folders on its own); only PNG
// and JPEG are decoded (other formats are listed and then skipped as unreadable); polygon (segment)
// label rows are rejected rather than turned into boxes.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/core/error.h"

typedef enum DatasetTask { DATASET_TASK_DETECT, DATASET_TASK_CLASSIFY, DATASET_TASK_COUNT } DatasetTask;

typedef enum DatasetSplitId { DATASET_SPLIT_TRAIN, DATASET_SPLIT_VAL, DATASET_SPLIT_TEST, DATASET_SPLIT_COUNT } DatasetSplitId;

extern const char *const dataset_split_names[DATASET_SPLIT_COUNT];  // "train", "val", "test"

// One split's image files as listed by dataset_open, not yet read.
typedef struct DatasetSource {
    bool present;         // test is optional; train and val are always present
    char *where;          // "data.yaml:3:8" (the YAML value) or the split's folder, for messages; owned
    int64_t n_images;
    char **image_paths;   // sorted by path (byte order); owned
    int32_t *classes;     // classification: class id of each image; NULL for detection; owned
} DatasetSource;

typedef struct Dataset {
    DatasetTask task;
    char *root;           // the dataset's root folder; owned
    int nc;
    char **names;         // nc class names; owned
    DatasetSource sources[DATASET_SPLIT_COUNT];
} Dataset;

// Reads `data` (a YAML file for detection, a folder for classification) and lists every split's
// images. Fails with "file:line:col: message" at the offending YAML value (a missing folder, no
// images, names and nc disagreeing, ...) or "path: message". The caller destroys *out.
bool dataset_open(const char *data, DatasetTask task, Dataset **out, Error *err);
void dataset_destroy(Dataset *ds);  // accepts NULL

// Appends the image files that `path` names to (*paths, *n_paths) as dataset_open lists a split: a
// folder's images (recursively, sorted, hidden entries skipped) or the image paths of a .txt list
// (relative to its folder). *paths is grown with realloc (start from NULL, 0); the caller frees each
// path and the array, on failure too. Fails with "path: message" (no such file or folder included).
bool dataset_list_images(const char *path, int64_t *n_paths, char ***paths, Error *err);

// ---- one split, verified -----------------------------------------------------------------------------

typedef struct DatasetBox {
    int32_t cls;
    float cx, cy, w, h;   // normalised by the image's width and height
} DatasetBox;

typedef struct DatasetSample {
    const char *image_path;  // owned by the split
    int width, height;       // of the decoded image
    int32_t cls;             // classification: the class; detection: -1
    int64_t first_box;       // detection: boxes[first_box, first_box + n_boxes) of the split
    int64_t n_boxes;
} DatasetSample;

// Why an image was left out. Ultralytics' verify_image_label rules: the image must decode and be at
// least 10 pixels each way; every label row must have 5 fields, an integer class in [0, nc), and
// coordinates within [0, 1] (with its 0.01 tolerance); one bad row drops the whole image.
typedef enum DatasetSkip {
    DATASET_SKIP_IMAGE_UNREADABLE,
    DATASET_SKIP_IMAGE_TOO_SMALL,
    DATASET_SKIP_LABEL_UNREADABLE,
    DATASET_SKIP_LABEL_FIELDS,
    DATASET_SKIP_LABEL_NUMBER,
    DATASET_SKIP_LABEL_CLASS,
    DATASET_SKIP_LABEL_COORDS,
    DATASET_SKIP_COUNT
} DatasetSkip;

extern const char *const dataset_skip_names[DATASET_SKIP_COUNT];  // "unreadable image", ...

enum { DATASET_NOTES_MAX = 5, DATASET_NOTE_BYTES = 600 };

typedef struct DatasetSplit {
    DatasetTask task;
    DatasetSplitId id;
    int nc;
    int64_t n_samples;
    DatasetSample *samples;      // the images kept, sorted by path; owned
    int64_t n_boxes;
    DatasetBox *boxes;           // detection: every kept box, grouped by sample; owned
    int64_t n_listed;            // images listed before verification
    int64_t n_skipped[DATASET_SKIP_COUNT];
    int64_t n_unlabelled;        // detection: images kept without a label file
    int64_t n_duplicates;        // detection: repeated label rows dropped (Ultralytics does too)
    int n_notes;                 // the first skips, in path order: "path[:line]: what is wrong"
    char notes[DATASET_NOTES_MAX][DATASET_NOTE_BYTES];
} DatasetSplit;

// Verifies split `id` of ds with n_threads threads (0 or 1: the calling thread); the result does not
// depend on n_threads. Skipped images never fail the scan; it fails (positioned at the split's YAML
// value) only when the split is absent or nothing is left. The caller destroys *out.
bool dataset_scan(const Dataset *ds, DatasetSplitId id, int n_threads, DatasetSplit **out, Error *err);
void dataset_split_destroy(DatasetSplit *split);  // accepts NULL

int64_t dataset_split_skipped(const DatasetSplit *split);  // all reasons

// Prints "train: 500 images, 1234 boxes, 3 skipped (2 unreadable image, 1 bad label fields)" and one
// indented line per note.
void dataset_split_print_summary(const DatasetSplit *split, FILE *out);
