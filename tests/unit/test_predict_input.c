// What `yolopipe predict` feeds the network and how its boxes go back, against independent references:
//   - resize_exact_linear against cv2.resize(INTER_LINEAR), bit for bit, on the cases of
//     tests/reference/resize_exact.tsv (make_resize_reference.py: random sizes, down- and up-scales,
//     and, when YOLOPIPE_ULTRALYTICS_ASSETS names Ultralytics' assets folder, bus.jpg and zidane.jpg,
//     whose decoded pixels must also equal cv2.imread's);
//   - augment_letterbox_rect and scale_boxes_to_original on cases worked out by hand from
//     Ultralytics' LetterBox and scale_boxes;
//   - source_list_expand on folders, .txt lists and missing paths.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/data/augment.h"
#include "framework/data/image_io.h"
#include "framework/data/resize_exact.h"
#include "framework/data/sources.h"
#include "framework/eval/scale_boxes.h"

static char source_root[512];

// The generator's bytes and hash (make_resize_reference.py).
static void lcg_fill(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (uint8_t)(x >> 56);
    }
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static uint64_t resized_hash(const Image *src, int w, int h) {
    Image out;
    resize_exact_linear(src, w, h, &out);
    uint64_t hash = fnv1a(out.data, (size_t)w * h * 3);
    image_free(&out);
    return hash;
}

// Exact equality with cv2: both are integer arithmetic, so any difference is a different formula.
static void test_resize_matches_cv2(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/resize_exact.tsv", source_root);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    const char *assets = getenv("YOLOPIPE_ULTRALYTICS_ASSETS");
    int n_random = 0, n_photo = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int sw, sh, dw, dh, w, h;
        unsigned long long seed, want, want_decode;
        char name[64];
        if (sscanf(line, "random %d %d %d %d %llu %llx", &sw, &sh, &dw, &dh, &seed, &want) == 6) {
            Image src;
            image_alloc(&src, sw, sh);
            lcg_fill(src.data, (size_t)sw * sh * 3, seed);
            uint64_t got = resized_hash(&src, dw, dh);
            if (got != want) fail_msg("%dx%d -> %dx%d (seed %llu): hash %016llx, cv2 %016llx", sw, sh, dw, dh, seed,
                                      (unsigned long long)got, want);
            image_free(&src);
            n_random++;
        } else if (sscanf(line, "photo %63s %d %d %llx %d %d %llx", name, &w, &h, &want_decode, &dw, &dh, &want) == 7 &&
                   assets) {
            char file[1024];
            snprintf(file, sizeof file, "%s/%s", assets, name);
            Image im;
            Error err = {0};
            if (!image_read(file, &im, &err)) fail_msg("%s", err.message);
            assert_int_equal(im.width, w);
            assert_int_equal(im.height, h);
            if (fnv1a(im.data, (size_t)w * h * 3) != want_decode) fail_msg("%s: decoded pixels differ from cv2.imread's", name);
            if (resized_hash(&im, dw, dh) != want) fail_msg("%s -> %dx%d differs from cv2.resize", name, dw, dh);
            image_free(&im);
            n_photo++;
        }
    }
    fclose(f);
    assert_true(n_random >= 50);
    if (assets) assert_int_equal(n_photo, 6);
    else printf("note: YOLOPIPE_ULTRALYTICS_ASSETS unset: the bus.jpg and zidane.jpg cases were not run\n");
}

// LetterBox(auto=True, stride=32) of the predictor, worked by hand.
static void test_letterbox_rect(void **state) {
    (void)state;
    // bus.jpg 810x1080 at 640: r = 640/1080, 480x640; dw = 160 mod 32 = 0 -> 480x640, no padding.
    Letterbox lb = augment_letterbox_rect(810, 1080, 640, 32);
    assert_int_equal(lb.new_w, 480);
    assert_int_equal(lb.new_h, 640);
    assert_int_equal(lb.out_w, 480);
    assert_int_equal(lb.out_h, 640);
    assert_int_equal(lb.left, 0);
    // zidane.jpg 1280x720 at 640: 640x360; dh = 280 mod 32 = 24, 12 above and 12 below -> 640x384.
    lb = augment_letterbox_rect(1280, 720, 640, 32);
    assert_int_equal(lb.new_h, 360);
    assert_int_equal(lb.out_h, 384);
    assert_int_equal(lb.top, 12);
    // 100x37 at 96: r = 0.96, 96 x round(35.52) = 36; dh = 60 mod 32 = 28, top round(13.9) = 14 -> 96x64.
    lb = augment_letterbox_rect(100, 37, 96, 32);
    assert_int_equal(lb.new_h, 36);
    assert_int_equal(lb.out_h, 64);
    assert_int_equal(lb.top, 14);
    // 50x41 at 160 (scaled up): r = 3.2, 160 x round(131.2) = 131; dh = 29 mod 32 = 29, d = 14.5:
    // top round(14.4) = 14, bottom round(14.6) = 15 -> 160x160.
    lb = augment_letterbox_rect(50, 41, 160, 32);
    assert_int_equal(lb.new_h, 131);
    assert_int_equal(lb.top, 14);
    assert_int_equal(lb.out_h, 160);
    // The padded image: 114 around, the resized pixels inside.
    Image src, out;
    image_alloc(&src, 50, 41);
    memset(src.data, 200, (size_t)50 * 41 * 3);
    augment_letterbox_image(&src, &lb, true, &out);
    assert_int_equal(out.width, 160);
    assert_int_equal(out.height, 160);
    assert_int_equal(out.data[(13 * 160 + 80) * 3], 114);
    assert_int_equal(out.data[(14 * 160 + 80) * 3], 200);
    assert_int_equal(out.data[(144 * 160 + 80) * 3], 200);
    assert_int_equal(out.data[(145 * 160 + 80) * 3], 114);
    image_free(&src);
    image_free(&out);
}

// scale_boxes: zidane at 640 (384x640 input, 12 rows of padding above, gain 0.5 both ways) and a
// box that leaves the image (clipped).
static void test_scale_boxes(void **state) {
    (void)state;
    float boxes[] = {100, 112, 300, 212, -10, 0, 700, 400};
    scale_boxes_to_original(640, 384, 1280, 720, boxes, 2);
    const float want[] = {200, 200, 600, 400, 0, 0, 1280, 720};
    for (int i = 0; i < 8; i++) assert_float_equal(boxes[i], want[i], 0);
    // 100x37 at 96 (96x64 input, top 14): gain_x 96/100, gain_y 36/37 (each side as LetterBox rounded it).
    float b[] = {48, 14 + 18, 96, 50};
    scale_boxes_to_original(96, 64, 100, 37, b, 1);
    assert_float_equal(b[0], 50, 1e-4);
    assert_float_equal(b[1], 18.0f / (36.0f / 37), 1e-4);
    assert_float_equal(b[2], 100, 1e-4);
    assert_float_equal(b[3], 37, 0);  // 36 / (36/37) = 37, clipped at the height
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

// Folder (sorted, images only), a .txt list relative to its folder, a plain file, a missing path and
// an empty folder (both reported and skipped).
static void test_sources(void **state) {
    (void)state;
    char dir[] = "/tmp/yp-sources-XXXXXX", path[600], list_path[600];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/imgs", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/empty", dir);
    mkdir(path, 0755);
    const char *names[] = {"imgs/b.jpg", "imgs/a.png", "imgs/notes.md", "c.JPG"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        touch(path);
    }
    snprintf(list_path, sizeof list_path, "%s/list.txt", dir);
    FILE *f = fopen(list_path, "w");
    fprintf(f, "imgs/b.jpg\n\n c.JPG \n");
    fclose(f);
    char imgs[600], missing[600], empty[600], plain[600];
    snprintf(imgs, sizeof imgs, "%s/imgs", dir);
    snprintf(missing, sizeof missing, "%s/nothere.jpg", dir);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    snprintf(plain, sizeof plain, "%s/imgs/notes.md", dir);
    char *args[] = {imgs, list_path, missing, empty, plain};
    char *report = NULL;
    size_t report_len = 0;
    FILE *rf = open_memstream(&report, &report_len);
    SourceList l;
    source_list_expand(args, 5, rf, &l);
    fclose(rf);
    assert_int_equal(l.n, 5);
    const char *want[] = {"imgs/a.png", "imgs/b.jpg", "imgs/b.jpg", "c.JPG", "imgs/notes.md"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, want[i]);
        assert_string_equal(l.paths[i], path);
    }
    char expected[2000];
    snprintf(expected, sizeof expected,
             "%s: no such file or folder, skipped\n"
             "%s: no images (looked for .jpg, .png and Ultralytics' other image extensions), skipped\n",
             missing, empty);
    assert_string_equal(report, expected);
    free(report);
    source_list_free(&l);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const char *root = getenv("YP_SOURCE_ROOT");
    snprintf(source_root, sizeof source_root, "%s", root ? root : ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_matches_cv2),
        cmocka_unit_test(test_letterbox_rect),
        cmocka_unit_test(test_scale_boxes),
        cmocka_unit_test(test_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
