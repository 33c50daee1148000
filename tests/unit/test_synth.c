// `yolopipe synth`: the files a dataset consists of, labels that tell the truth about the pixels,
// byte-identical output for a seed whatever the thread count, the classification layout, refusing to
// overwrite, and the `synth:` block's errors with their positions.
//
// Truthfulness is checked without the generator's own geometry: backgrounds are greyish (chroma, the
// largest minus the smallest channel, at most 65) and shapes saturated (chroma at least 134), so a
// pixel of chroma ≥ 100 can only be shape. Every such pixel must lie in a labelled box, and every box
// must be largely made of them and reach each of its four sides.
#include <dirent.h>
#include <ftw.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/data/image_io.h"
#include "framework/data/synth.h"

enum { SHAPE_CHROMA = 100, MAX_BOXES = 16 };

typedef struct Box {
    int cls;
    double x0, y0, x1, y1;  // pixels
} Box;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void tree_remove(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

// A fresh directory under /tmp, removed by the test that made it.
static void temp_dir(char *path, size_t cap) {
    snprintf(path, cap, "/tmp/yp-test-synth-XXXXXX");
    assert_non_null(mkdtemp(path));
}

static bool file_exists(const char *path) {
    return access(path, F_OK) == 0;
}

static void generate(SynthConfig *cfg, const char *out) {
    cfg->out_dir = out;
    Error err = {0};
    if (!synth_generate(cfg, NULL, &err)) fail_msg("synth_generate: %s", err.message);
}

static SynthConfig small_detect(void) {
    SynthConfig cfg = synth_config_default();
    cfg.n_train = 12;
    cfg.n_val = 4;
    cfg.imgsz = 96;
    cfg.n_classes = 6;
    cfg.seed = 7;
    return cfg;
}

static int chroma(const Image *im, int x, int y) {
    const uint8_t *p = im->data + 3 * ((size_t)y * (size_t)im->width + (size_t)x);
    int lo = p[0], hi = p[0];
    for (int c = 1; c < 3; c++) lo = p[c] < lo ? p[c] : lo, hi = p[c] > hi ? p[c] : hi;
    return hi - lo;
}

static int labels_read(const char *path, int n_classes, double size, Box *boxes) {
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    int n = 0, cls;
    double cx, cy, w, h;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char tail;
        if (sscanf(line, "%d %lf %lf %lf %lf%c", &cls, &cx, &cy, &w, &h, &tail) != 6 || tail != '\n')
            fail_msg("%s: bad label line '%s'", path, line);
        assert_in_range(cls, 0, n_classes - 1);
        // Normalised and inside the image, to the 6 written decimals.
        double eps = 1e-6;
        if (!(w > 0 && h > 0 && cx - w / 2 >= -eps && cy - h / 2 >= -eps && cx + w / 2 <= 1 + eps && cy + h / 2 <= 1 + eps))
            fail_msg("%s: box outside the image: %s", path, line);
        assert_true(n < MAX_BOXES);
        boxes[n++] = (Box){cls, (cx - w / 2) * size, (cy - h / 2) * size, (cx + w / 2) * size, (cy + h / 2) * size};
    }
    fclose(f);
    return n;
}

// The truthfulness checks of the header comment on one image. Tolerances: a pixel counts as inside a
// box when its centre is, and as outside only when its centre is more than 1 px away (anti-aliased
// edges reach half a pixel past the outline); each side must be reached by shape pixels within 3 px (a
// star's 36° tip is under 2 px wide 3 px from its end, so its last pixels are blends).
static void check_image_truthful(const char *image_path, const Box *boxes, int n) {
    Image im = {0};
    Error err = {0};
    if (!image_read(image_path, &im, &err)) fail_msg("%s", err.message);
    assert_int_equal(im.width, 96);
    assert_int_equal(im.height, 96);
    for (int y = 0; y < im.height; y++) {
        for (int x = 0; x < im.width; x++) {
            if (chroma(&im, x, y) < SHAPE_CHROMA) continue;
            double px = x + 0.5, py = y + 0.5;
            bool covered = false;
            for (int b = 0; b < n && !covered; b++)
                covered = px > boxes[b].x0 - 1 && px < boxes[b].x1 + 1 && py > boxes[b].y0 - 1 && py < boxes[b].y1 + 1;
            if (!covered) fail_msg("%s: shape-coloured pixel (%d, %d) outside every box", image_path, x, y);
        }
    }
    for (int b = 0; b < n; b++) {
        const Box *B = &boxes[b];
        int inside = 0, shape = 0;
        double reach[4] = {1e9, 1e9, 1e9, 1e9};  // distance from each side to its nearest shape pixel
        for (int y = 0; y < im.height; y++) {
            for (int x = 0; x < im.width; x++) {
                double px = x + 0.5, py = y + 0.5;
                if (px < B->x0 || px > B->x1 || py < B->y0 || py > B->y1) continue;
                inside++;
                if (chroma(&im, x, y) < SHAPE_CHROMA) continue;
                shape++;
                double d[4] = {px - B->x0, py - B->y0, B->x1 - px, B->y1 - py};
                for (int s = 0; s < 4; s++) reach[s] = d[s] < reach[s] ? d[s] : reach[s];
            }
        }
        // The sparsest shape, a star rotated in its box, fills about 30% of it.
        if (shape < 0.2 * inside)
            fail_msg("%s: box %d (class %d) has %d shape pixels of %d", image_path, b, B->cls, shape, inside);
        for (int s = 0; s < 4; s++)
            if (reach[s] > 3) fail_msg("%s: box %d side %d is %.2f px from the shape", image_path, b, s, reach[s]);
    }
    image_free(&im);
}

static void test_detect_files_and_truthful_labels(void **state) {
    (void)state;
    char dir[64], out[128], path[256];
    temp_dir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/shapes", dir);  // parents are created as needed
    SynthConfig cfg = small_detect();
    cfg.out_dir = out;
    SynthSummary summary;
    Error err = {0};
    if (!synth_generate(&cfg, &summary, &err)) fail_msg("%s", err.message);
    assert_int_equal(summary.n_images, 16);

    // data.yaml, read back through the YAML loader.
    snprintf(path, sizeof path, "%s/data.yaml", out);
    YamlDoc *yd = NULL;
    if (!yaml_doc_load(path, &yd, &err)) fail_msg("%s", err.message);
    yaml_node_t *root = yaml_doc_root(yd);
    assert_string_equal(yaml_node_text(yaml_map_get(yd, root, "path")), ".");
    assert_string_equal(yaml_node_text(yaml_map_get(yd, root, "train")), "images/train");
    assert_string_equal(yaml_node_text(yaml_map_get(yd, root, "val")), "images/val");
    yaml_node_t *names = yaml_map_get(yd, root, "names");
    assert_int_equal(yaml_seq_len(names), 6);
    static const char *const expected[6] = {"circle", "square", "triangle", "cross", "ring", "star"};
    for (int k = 0; k < 6; k++) assert_string_equal(yaml_node_text(yaml_seq_at(yd, names, k)), expected[k]);
    yaml_doc_destroy(yd);

    int64_t n_boxes = 0;
    int class_seen[6] = {0};
    static const char *const splits[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < (s ? 4 : 12); i++) {
            Box boxes[MAX_BOXES];
            snprintf(path, sizeof path, "%s/labels/%s/%06d.txt", out, splits[s], i);
            int n = labels_read(path, 6, 96, boxes);
            assert_in_range(n, 1, 6);
            n_boxes += n;
            for (int b = 0; b < n; b++) class_seen[boxes[b].cls]++;
            snprintf(path, sizeof path, "%s/images/%s/%06d.png", out, splits[s], i);
            check_image_truthful(path, boxes, n);
        }
        snprintf(path, sizeof path, "%s/images/%s/%06d.png", out, splits[s], s ? 4 : 12);
        assert_false(file_exists(path));  // exactly the images asked for
    }
    assert_int_equal(n_boxes, summary.n_boxes);
    for (int k = 0; k < 6; k++) assert_true(class_seen[k] > 0);
    tree_remove(dir);
}

// Reads a whole file into a malloc'd buffer.
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*n + 1);
    assert_int_equal(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

static bool files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *fa = slurp(a, &na), *fb = slurp(b, &nb);
    bool equal = na == nb && !memcmp(fa, fb, na);
    free(fa);
    free(fb);
    return equal;
}

// Every file of a small detection set (data.yaml, images, labels) in dir a against dir b.
static int count_differing(const char *a, const char *b) {
    int differing = 0;
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/data.yaml", a);
    snprintf(pb, sizeof pb, "%s/data.yaml", b);
    differing += !files_equal(pa, pb);
    static const char *const splits[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < (s ? 4 : 12); i++) {
            for (int kind = 0; kind < 2; kind++) {
                const char *fmt = kind ? "%s/labels/%s/%06d.txt" : "%s/images/%s/%06d.png";
                snprintf(pa, sizeof pa, fmt, a, splits[s], i);
                snprintf(pb, sizeof pb, fmt, b, splits[s], i);
                differing += !files_equal(pa, pb);
            }
        }
    }
    return differing;
}

static void test_detect_deterministic(void **state) {
    (void)state;
    char dir[64], one[128], three[128], other[128];
    temp_dir(dir, sizeof dir);
    snprintf(one, sizeof one, "%s/one-thread", dir);
    snprintf(three, sizeof three, "%s/three-threads", dir);
    snprintf(other, sizeof other, "%s/other-seed", dir);
    int threads = omp_get_max_threads();
    SynthConfig cfg = small_detect();
    omp_set_num_threads(1);
    generate(&cfg, one);
    omp_set_num_threads(3);
    generate(&cfg, three);
    cfg.seed = 8;
    generate(&cfg, other);
    omp_set_num_threads(threads);
    assert_int_equal(count_differing(one, three), 0);
    // Only data.yaml's comment line names the seed; all 32 images and labels change with it.
    assert_int_equal(count_differing(one, other), 1 + 2 * 16);
    tree_remove(dir);
}

static void test_classify_layout(void **state) {
    (void)state;
    char dir[64], path[256];
    temp_dir(dir, sizeof dir);
    SynthConfig cfg = synth_config_default();
    cfg.task = SYNTH_TASK_CLASSIFY;
    cfg.n_train = 8;
    cfg.n_val = 4;
    cfg.imgsz = 64;
    cfg.n_classes = 4;
    generate(&cfg, dir);  // an existing empty directory is filled
    // Image i of a split is of class i mod 4, in the folder named after it.
    static const char *const shapes[4] = {"circle", "square", "triangle", "cross"};
    static const char *const splits[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < (s ? 4 : 8); i++) {
            for (int k = 0; k < 4; k++) {
                snprintf(path, sizeof path, "%s/%s/%s/%06d.png", dir, splits[s], shapes[k], i);
                assert_int_equal(file_exists(path), k == i % 4);
            }
            snprintf(path, sizeof path, "%s/%s/%s/%06d.png", dir, splits[s], shapes[i % 4], i);
            Image im = {0};
            Error err = {0};
            if (!image_read(path, &im, &err)) fail_msg("%s", err.message);
            // One shape of 35%-75% of the side near the middle: the centre pixel region holds shape colour.
            int shape = 0;
            for (int y = 24; y < 40; y++)
                for (int x = 24; x < 40; x++) shape += chroma(&im, x, y) >= SHAPE_CHROMA;
            assert_true(shape > 0);
            image_free(&im);
        }
    }
    snprintf(path, sizeof path, "%s/images", dir);
    assert_false(file_exists(path));
    // Class folders numbered as Ultralytics numbers them: sorted.
    snprintf(path, sizeof path, "%s/data.yaml", dir);
    YamlDoc *yd = NULL;
    Error err = {0};
    if (!yaml_doc_load(path, &yd, &err)) fail_msg("%s", err.message);
    yaml_node_t *root = yaml_doc_root(yd), *names = yaml_map_get(yd, root, "names");
    assert_string_equal(yaml_node_text(yaml_map_get(yd, root, "train")), "train");
    static const char *const sorted[4] = {"circle", "cross", "square", "triangle"};
    assert_int_equal(yaml_seq_len(names), 4);
    for (int k = 0; k < 4; k++) assert_string_equal(yaml_node_text(yaml_seq_at(yd, names, k)), sorted[k]);
    yaml_doc_destroy(yd);
    tree_remove(dir);
}

// No "<out>.partial-*" or "<out>.old-*" directory is left beside a dataset.
static void assert_no_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".partial-") || strstr(e->d_name, ".old-")) fail_msg("left behind: %s/%s", dir, e->d_name);
    closedir(d);
}

static void test_refuses_to_overwrite(void **state) {
    (void)state;
    char dir[64], out[128], path[256];
    temp_dir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/shapes", dir);
    SynthConfig cfg = small_detect();
    cfg.n_train = 2;
    cfg.n_val = 1;
    generate(&cfg, out);
    size_t n_before;
    snprintf(path, sizeof path, "%s/images/train/000000.png", out);
    free(slurp(path, &n_before));

    Error err = {0};
    cfg.seed = 99;
    assert_false(synth_generate(&cfg, NULL, &err));
    char expected[512];
    snprintf(expected, sizeof expected, "%s: exists and is not empty; not replacing it without --force", out);
    assert_string_equal(err.message, expected);
    assert_no_leftovers(dir);

    // --force replaces a previous dataset: the new seed's files, nothing of the old ones.
    cfg.force = true;
    cfg.n_train = 1;
    generate(&cfg, out);
    assert_no_leftovers(dir);
    snprintf(path, sizeof path, "%s/images/train/000001.png", out);
    assert_false(file_exists(path));

    // ... but not a directory that holds no dataset, nor a file.
    snprintf(path, sizeof path, "%s/data.yaml", out);
    assert_int_equal(remove(path), 0);
    assert_false(synth_generate(&cfg, NULL, &err));
    snprintf(expected, sizeof expected,
             "%s: --force replaces only a dataset directory (one with a data.yaml); not this one", out);
    assert_string_equal(err.message, expected);
    snprintf(path, sizeof path, "%s/images/train/000000.png", out);
    cfg.out_dir = path;
    assert_false(synth_generate(&cfg, NULL, &err));
    snprintf(expected, sizeof expected, "%s: exists and is not a directory", path);
    assert_string_equal(err.message, expected);
    assert_no_leftovers(dir);

    // Out-of-range settings in a hand-built configuration are user errors, not crashes.
    cfg.out_dir = out;
    cfg.imgsz = 16;
    assert_false(synth_generate(&cfg, NULL, &err));
    assert_string_equal(err.message, "imgsz must be from 32 to 4096, found 16");
    tree_remove(dir);
}

static void test_set_int(void **state) {
    (void)state;
    SynthConfig cfg = synth_config_default();
    Error err = {0};
    assert_true(synth_config_set_int(&cfg, "classes", 6, "--classes", &err));
    assert_int_equal(cfg.n_classes, 6);
    assert_false(synth_config_set_int(&cfg, "classes", 7, "--classes", &err));
    assert_string_equal(err.message, "--classes must be from 1 to 6, found 7");
    assert_false(synth_config_set_int(&cfg, "train", 1000001, "--train", &err));
    assert_string_equal(err.message, "--train must be from 1 to 1000000, found 1000001");
    assert_false(synth_config_set_int(&cfg, "seed", -1, "--seed", &err));
    assert_string_equal(err.message, "--seed must be 0 or more, found -1");
    assert_false(synth_config_set_int(&cfg, "epochs", 1, "--epochs", &err));
    assert_string_equal(err.message, "unknown synth setting 'epochs' (known: train, val, imgsz, classes, seed)");
    assert_int_equal(cfg.n_classes, 6);  // failures leave the configuration as it was
}

// Loads `text` as a YAML file and parses its top-level `synth:` value. Returns the parse result.
static bool parse_block(const char *text, SynthConfig *cfg, Error *err, char *path, size_t cap) {
    char dir[64];
    temp_dir(dir, sizeof dir);
    snprintf(path, cap, "%s/data.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    YamlDoc *yd = NULL;
    if (!yaml_doc_load(path, &yd, err)) fail_msg("%s", err->message);
    bool ok = synth_config_from_yaml(yd, yaml_map_get(yd, yaml_doc_root(yd), "synth"), cfg, err);
    yaml_doc_destroy(yd);
    tree_remove(dir);
    return ok;
}

static void test_yaml_block(void **state) {
    (void)state;
    SynthConfig cfg;
    Error err = {0};
    char path[128];
    if (!parse_block("synth:\n  task: classify\n  train: 10\n  val: 3\n  imgsz: 64\n  classes: 5\n  seed: 42\n", &cfg,
                     &err, path, sizeof path))
        fail_msg("%s", err.message);
    assert_int_equal(cfg.task, SYNTH_TASK_CLASSIFY);
    assert_int_equal(cfg.n_train, 10);
    assert_int_equal(cfg.n_val, 3);
    assert_int_equal(cfg.imgsz, 64);
    assert_int_equal(cfg.n_classes, 5);
    assert_int_equal(cfg.seed, 42);
    assert_null(cfg.out_dir);

    // Absent keys keep their defaults.
    SynthConfig defaults = synth_config_default();
    assert_true(parse_block("synth: {imgsz: 128}\n", &cfg, &err, path, sizeof path));
    assert_int_equal(cfg.imgsz, 128);
    assert_int_equal(cfg.n_train, defaults.n_train);
    assert_int_equal(cfg.task, defaults.task);

    // Each error at the key or value it is about, "file:line:col: message".
    static const struct {
        const char *yaml, *message;
    } cases[] = {
        {"synth:\n  imgsz: 8\n", "2:10: synth.imgsz must be from 32 to 4096, found 8"},
        {"synth:\n  train: three\n", "2:10: synth.train must be an integer, found a string 'three'"},
        {"synth:\n  val: 2.5\n", "2:8: synth.val must be an integer, found a number '2.5'"},
        {"synth:\n  seed: -3\n", "2:9: synth.seed must be 0 or more, found -3"},
        {"synth:\n  classes: 0\n", "2:12: synth.classes must be from 1 to 6, found 0"},
        {"synth:\n  task: segment\n", "2:9: synth.task must be detect or classify, found 'segment'"},
        {"synth:\n  task: [detect]\n", "2:9: synth.task must be a string, found a list of 1 item"},
        {"synth:\n  imgsz: 64\n  epochs: 3\n",
         "3:3: unknown key 'epochs' in a synth block (known: task, train, val, imgsz, classes, seed)"},
        {"synth: [detect]\n",
         "1:8: a synth block must be a mapping of task, train, val, imgsz, classes, seed; found a list of 1 item"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_false(parse_block(cases[i].yaml, &cfg, &err, path, sizeof path));
        char expected[512];
        snprintf(expected, sizeof expected, "%s:%s", path, cases[i].message);
        assert_string_equal(err.message, expected);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_files_and_truthful_labels),
        cmocka_unit_test(test_detect_deterministic),
        cmocka_unit_test(test_classify_layout),
        cmocka_unit_test(test_refuses_to_overwrite),
        cmocka_unit_test(test_set_int),
        cmocka_unit_test(test_yaml_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
