// Augmentations: box transforms against values worked out by hand, resize and RandomHSV against
// OpenCV and Ultralytics (fixtures from tests/reference/make_image_reference.py), and mosaics of
// synthetic images whose boxes must frame their objects' pixels.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framework/data/augment.h"
#include "framework/core/rng.h"
#include "tests/common/assert_close.h"

static char source_root[512];

static void assert_box(const AugBox *b, float x1, float y1, float x2, float y2) {
    // Hand-computed coordinates are exact in binary except for float rounding of the products.
    const float tol = 1e-4f;
    if (!close_enough(b->x1, x1, tol, 0.0) || !close_enough(b->y1, y1, tol, 0.0) ||
        !close_enough(b->x2, x2, tol, 0.0) || !close_enough(b->y2, y2, tol, 0.0))
        fail_msg("box (%g, %g, %g, %g), expected (%g, %g, %g, %g)", b->x1, b->y1, b->x2, b->y2, x1, y1, x2, y2);
}

static Image read_raw(const char *name, int width, int height) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/images/%s", source_root, name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    Image im;
    image_alloc(&im, width, height);
    assert_int_equal(fread(im.data, 1, (size_t)width * height * 3, f), (size_t)width * height * 3);
    fclose(f);
    return im;
}

// Largest difference, and how many samples differ at all.
static int compare_images(const Image *a, const Image *b, int *n_diff) {
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    int worst = 0;
    *n_diff = 0;
    for (size_t i = 0; i < (size_t)a->width * a->height * 3; i++) {
        int d = abs((int)a->data[i] - (int)b->data[i]);
        worst = d > worst ? d : worst;
        *n_diff += d > 0;
    }
    return worst;
}

static void test_load_size(void **state) {
    (void)state;
    int w, h;
    augment_load_size(100, 50, 64, &w, &h);
    assert_int_equal(w, 64);
    assert_int_equal(h, 32);
    augment_load_size(1000, 333, 640, &w, &h);  // 333 · 0.64 = 213.12, rounded up
    assert_int_equal(w, 640);
    assert_int_equal(h, 214);
    augment_load_size(30, 40, 40, &w, &h);  // already at size
    assert_int_equal(w, 30);
    assert_int_equal(h, 40);
}

// OpenCV's INTER_LINEAR uses 11-bit fixed-point weights; ours are double: at most 1 level apart.
static void test_resize_against_opencv(void **state) {
    (void)state;
    Image card = read_raw("hsv_in.rgb", 64, 48);
    static const int sizes[][2] = {{40, 30}, {100, 75}, {64, 20}};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "resize_%dx%d.rgb", sizes[i][0], sizes[i][1]);
        Image expected = read_raw(name, sizes[i][0], sizes[i][1]), got;
        augment_resize(&card, sizes[i][0], sizes[i][1], &got);
        int n_diff, worst = compare_images(&got, &expected, &n_diff);
        if (worst > 1) fail_msg("%s: %d levels from cv2.resize (%d samples differ)", name, worst, n_diff);
        image_free(&got);
        image_free(&expected);
    }
    image_free(&card);
}

// RandomHSV: every step is reproduced exactly (OpenCV's integer RGB→HSV, Ultralytics' float64
// tables, OpenCV's vectorised single-precision HSV→RGB), so no tolerance.
static void test_hsv_against_ultralytics(void **state) {
    (void)state;
    static const struct {
        const char *name;
        double draws[3];
    } cases[] = {{"hsv_a.rgb", {0.8, 0.9, 0.7}}, {"hsv_b.rgb", {-0.6, -0.5, -0.9}}, {"hsv_c.rgb", {1.0, -1.0, 1.0}}};
    for (int i = 0; i < 3; i++) {
        Image im = read_raw("hsv_in.rgb", 64, 48), expected = read_raw(cases[i].name, 64, 48);
        HsvGains g = {cases[i].draws[0] * 0.015, cases[i].draws[1] * 0.7, cases[i].draws[2] * 0.4};
        augment_hsv_apply(&im, g);
        int n_diff, worst = compare_images(&im, &expected, &n_diff);
        if (worst)
            fail_msg("%s: %d levels from Ultralytics' RandomHSV, %d samples differ", cases[i].name, worst, n_diff);
        image_free(&im);
        image_free(&expected);
    }
    // The draws are uniform(-1, 1) times the gains.
    AugmentSettings st = augment_settings_default();
    for (uint64_t s = 0; s < 50; s++) {
        HsvGains g = augment_hsv_draw(&st, s);
        assert_true(fabs(g.h) <= 0.015 && fabs(g.s) <= 0.7 && fabs(g.v) <= 0.4);
    }
}

static void fill(Image *im, uint8_t r, uint8_t g, uint8_t b) {
    for (size_t i = 0; i < (size_t)im->width * im->height; i++) {
        im->data[3 * i] = r;
        im->data[3 * i + 1] = g;
        im->data[3 * i + 2] = b;
    }
}

static const uint8_t *pixel(const Image *im, int x, int y) {
    return im->data + ((size_t)y * im->width + x) * 3;
}

static void assert_rgb(const uint8_t *px, int r, int g, int b) {
    if (px[0] != r || px[1] != g || px[2] != b) fail_msg("pixel (%d, %d, %d), expected (%d, %d, %d)", px[0], px[1], px[2], r, g, b);
}

static void test_letterbox(void **state) {
    (void)state;
    // 40x30 into 64x64: ratio 1.6, resized 64x48, padded 8 rows above and below.
    Letterbox lb = augment_letterbox_fit(40, 30, 64, 64, true);
    assert_true(lb.ratio == 1.6);
    assert_int_equal(lb.new_w, 64);
    assert_int_equal(lb.new_h, 48);
    assert_int_equal(lb.left, 0);
    assert_int_equal(lb.top, 8);
    AugBox box = {.cls = 1, .x1 = 10, .y1 = 5, .x2 = 20, .y2 = 15};
    augment_letterbox_boxes(&lb, &box, 1);
    assert_box(&box, 16, 16, 32, 32);

    // 50x30: ratio 1.28, 64 x round(38.4) = 38; 26 rows of padding split round(12.9) = 13 above.
    lb = augment_letterbox_fit(50, 30, 64, 64, true);
    assert_int_equal(lb.new_h, 38);
    assert_int_equal(lb.top, 13);
    Image src, out;
    image_alloc(&src, 50, 30);
    fill(&src, 200, 10, 60);
    augment_letterbox_image(&src, &lb, false, &out);
    assert_int_equal(out.width, 64);
    assert_int_equal(out.height, 64);
    assert_int_equal(pixel(&out, 5, 12)[0], 114);  // above the image
    assert_int_equal(pixel(&out, 5, 13)[0], 200);  // its first row
    assert_int_equal(pixel(&out, 5, 50)[2], 60);   // its last row
    assert_int_equal(pixel(&out, 5, 51)[1], 114);
    image_free(&out);
    image_free(&src);

    // Validation never enlarges: 40x30 stays, centred at (12, round(16.9) = 17).
    lb = augment_letterbox_fit(40, 30, 64, 64, false);
    assert_true(lb.ratio == 1.0);
    assert_int_equal(lb.left, 12);
    assert_int_equal(lb.top, 17);
    box = (AugBox){.x1 = 10, .y1 = 5, .x2 = 20, .y2 = 15};
    augment_letterbox_boxes(&lb, &box, 1);
    assert_box(&box, 22, 22, 32, 32);
}

static void test_flip(void **state) {
    (void)state;
    AugBox box = {.x1 = 10, .y1 = 5, .x2 = 20, .y2 = 15};
    augment_flip_boxes(&box, 1, 64);
    assert_box(&box, 44, 5, 54, 15);
    Image im;
    image_alloc(&im, 5, 2);
    for (int i = 0; i < 30; i++) im.data[i] = (uint8_t)i;
    augment_flip_image(&im);
    assert_rgb(pixel(&im, 0, 0), 12, 13, 14);
    assert_rgb(pixel(&im, 2, 1), 21, 22, 23);
    assert_rgb(pixel(&im, 4, 1), 15, 16, 17);
    image_free(&im);
}

static void test_warp(void **state) {
    (void)state;
    // With no rotation, zoom, shear or translation jitter the matrix only moves the input's centre
    // (50, 40) to the output's (32, 32): a shift of (-18, -8).
    AugmentSettings st = augment_settings_default();
    st.translate = st.scale = 0;
    AugWarp w = augment_warp_draw(&st, 100, 80, 64, 64, 7);
    assert_true(w.scale == 1.0);
    assert_true(w.m[0][0] == 1 && w.m[0][1] == 0 && w.m[0][2] == -18 && w.m[1][2] == -8 && w.m[2][2] == 1);
    AugBox boxes[4] = {
        {.cls = 0, .x1 = 20, .y1 = 10, .x2 = 60, .y2 = 50},  // → (2, 2, 42, 42)
        {.cls = 1, .x1 = 0, .y1 = 0, .x2 = 10, .y2 = 10},    // → off the output: dropped
        {.cls = 2, .x1 = 10, .y1 = 0, .x2 = 30, .y2 = 20},   // → clipped to (0, 0, 12, 12): 36% left, kept
        {.cls = 3, .x1 = 0, .y1 = 40, .x2 = 19, .y2 = 60},   // → clipped to 1 px wide: dropped
    };
    assert_int_equal(augment_warp_boxes(&w, boxes, 4), 2);
    assert_box(&boxes[0], 2, 2, 42, 42);
    assert_int_equal(boxes[1].cls, 2);
    assert_box(&boxes[1], 0, 0, 12, 12);

    // An integer shift moves pixels exactly; what comes from outside the input is 114.
    Image src, out;
    image_alloc(&src, 100, 80);
    for (int i = 0; i < 100 * 80 * 3; i++) src.data[i] = (uint8_t)(i % 251);
    augment_warp_image(&src, &w, &out);
    assert_memory_equal(pixel(&out, 10, 20), pixel(&src, 28, 28), 3);
    assert_memory_equal(pixel(&out, 63, 63), pixel(&src, 81, 71), 3);
    image_free(&out);
    image_free(&src);

    // A quarter turn about the output centre, by hand: (x, y) → (64 - y, x) maps the box
    // (10, 20, 30, 24) to (40, 10, 44, 30); doubling the zoom doubles the area it is compared with.
    AugWarp turn = {.m = {{0, -1, 64}, {1, 0, 0}, {0, 0, 1}}, .scale = 1, .out_w = 64, .out_h = 64};
    AugBox b = {.x1 = 10, .y1 = 20, .x2 = 30, .y2 = 24};
    assert_int_equal(augment_warp_boxes(&turn, &b, 1), 1);
    assert_box(&b, 40, 10, 44, 30);
    // A zoom of 0.2 (as drawn) that the matrix does not apply leaves 1/25 = 4% of the area: dropped.
    AugWarp shrink = {.m = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}, .scale = 5, .out_w = 64, .out_h = 64};
    b = (AugBox){.x1 = 10, .y1 = 10, .x2 = 30, .y2 = 30};
    assert_int_equal(augment_warp_boxes(&shrink, &b, 1), 0);
    // Aspect ratio 100 or more is dropped: 40 x 0.4 px fails the 2-pixel rule first, so use 300 x 3.
    AugWarp wide = {.m = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}, .scale = 1, .out_w = 400, .out_h = 400};
    b = (AugBox){.x1 = 0, .y1 = 0, .x2 = 300, .y2 = 3};
    assert_int_equal(augment_warp_boxes(&wide, &b, 1), 0);
    b = (AugBox){.x1 = 0, .y1 = 0, .x2 = 290, .y2 = 3};
    assert_int_equal(augment_warp_boxes(&wide, &b, 1), 1);

    // Default draws: zoom within [0.5, 1.5], centre within ±10% of the output around its middle.
    st = augment_settings_default();
    for (uint64_t s = 0; s < 100; s++) {
        w = augment_warp_draw(&st, 128, 128, 64, 64, s);
        assert_true(w.scale >= 0.5 && w.scale <= 1.5);
        assert_true(fabs(w.m[0][0] - w.scale) < 1e-12 && w.m[0][1] == 0);
        double cx = w.m[0][0] * 64 + w.m[0][2];  // where the input centre lands
        assert_true(cx >= 0.4 * 64 - 1e-9 && cx <= 0.6 * 64 + 1e-9);
    }
}

// The four mosaic inputs: a dull background with one square of a distinct colour, boxed.
static const uint8_t square_colours[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 0}};

static bool is_colour(const uint8_t *px, int k) {
    for (int c = 0; c < 3; c++)
        if (abs((int)px[c] - square_colours[k][c]) > 40) return false;
    return true;
}

static void test_mosaic_boxes_frame_objects(void **state) {
    (void)state;
    const int s = 96;
    AugmentSettings st = augment_settings_default();
    int n_kept_total = 0;
    for (uint64_t seed = 0; seed < 40; seed++) {
        Image tiles[4];
        int widths[4], heights[4];
        AugBox boxes[4];
        for (int k = 0; k < 4; k++) {
            // Sizes and square positions vary with the seed and the tile.
            widths[k] = 60 + (int)(rng_uniform(seed, 10 + k) * 36);
            heights[k] = 50 + (int)(rng_uniform(seed, 20 + k) * 46);
            int side = 16 + (int)(rng_uniform(seed, 30 + k) * 20);
            int x0 = (int)(rng_uniform(seed, 40 + k) * (widths[k] - side)), y0 = (int)(rng_uniform(seed, 50 + k) * (heights[k] - side));
            image_alloc(&tiles[k], widths[k], heights[k]);
            fill(&tiles[k], 70, 70, 70);
            for (int y = y0; y < y0 + side; y++)
                for (int x = x0; x < x0 + side; x++) memcpy(tiles[k].data + ((size_t)y * widths[k] + x) * 3, square_colours[k], 3);
            boxes[k] = (AugBox){.cls = k, .x1 = (float)x0, .y1 = (float)y0, .x2 = (float)(x0 + side), .y2 = (float)(y0 + side)};
        }
        Mosaic m = augment_mosaic_layout(s, widths, heights, seed);
        assert_true(m.xc >= s / 2 && m.xc < 3 * s / 2 && m.yc >= s / 2 && m.yc < 3 * s / 2);
        Image canvas, out;
        augment_mosaic_image(&m, tiles, &canvas);
        AugBox all[4];
        int n = 0;
        for (int k = 0; k < 4; k++) {
            all[n] = boxes[k];
            n += augment_mosaic_boxes(&m, k, &all[n], 1);
        }
        AugWarp w = augment_warp_draw(&st, canvas.width, canvas.height, s, s, seed + 1000);
        augment_warp_image(&canvas, &w, &out);
        n = augment_warp_boxes(&w, all, n);
        n_kept_total += n;
        for (int i = 0; i < n; i++) {
            const AugBox *b = &all[i];
            assert_true(b->x1 >= 0 && b->y1 >= 0 && b->x2 <= s && b->y2 <= s && b->x2 > b->x1 && b->y2 > b->y1);
            // Inside the box (one pixel in from its edges, where bilinear blending mixes colours)
            // every pixel is the object's colour...
            int inside = 0, total = 0;
            for (int y = (int)ceilf(b->y1) + 1; y < (int)floorf(b->y2) - 1; y++)
                for (int x = (int)ceilf(b->x1) + 1; x < (int)floorf(b->x2) - 1; x++, total++) inside += is_colour(pixel(&out, x, y), b->cls);
            if (inside != total) fail_msg("seed %llu class %d: %d of %d pixels in its box", (unsigned long long)seed, b->cls, inside, total);
            // ...and none of that colour lies more than a pixel outside it.
            for (int y = 0; y < s; y++)
                for (int x = 0; x < s; x++)
                    if (is_colour(pixel(&out, x, y), b->cls) && (x < b->x1 - 1 || x > b->x2 || y < b->y1 - 1 || y > b->y2))
                        fail_msg("seed %llu class %d: its colour at (%d, %d) outside its box", (unsigned long long)seed, b->cls, x, y);
        }
        image_free(&out);
        image_free(&canvas);
        for (int k = 0; k < 4; k++) image_free(&tiles[k]);
    }
    assert_true(n_kept_total > 40);  // the check ran on many boxes
}

static void test_classify_crops(void **state) {
    (void)state;
    // Resize(32) of 100x50 is 64x32; CenterCrop(32) starts 16 resized pixels in = 25 source pixels.
    CropBox c = augment_center_crop(100, 50, 32);
    assert_true(c.x == 25 && c.y == 0 && c.w == 50 && c.h == 50);
    c = augment_center_crop(30, 45, 20);  // 20 x int(30) = 30; offset round(5) = 5 resized rows = 7.5 source rows
    assert_true(c.x == 0 && c.w == 30 && c.y == 7.5 && c.h == 30);
    AugmentSettings st = augment_settings_default();
    for (uint64_t s = 0; s < 200; s++) {
        c = augment_random_resized_crop(&st, 120, 80, s);
        assert_true(c.x >= 0 && c.y >= 0 && c.x + c.w <= 120 && c.y + c.h <= 80);
        assert_true(c.w * c.h >= 0.5 * 120 * 80 * 0.97);  // rounding of the sides
        double ratio = c.w / c.h;
        assert_true(ratio > 0.75 * 0.95 && ratio < 4.0 / 3.0 * 1.05);
    }
    // A strip too thin for any attempt falls back to the centre crop at the nearest allowed ratio.
    c = augment_random_resized_crop(&st, 400, 10, 3);
    assert_true(c.w == 13 && c.h == 10 && c.x == 193 && c.y == 0);
    Image src, out;
    image_alloc(&src, 100, 50);
    fill(&src, 9, 99, 199);
    augment_crop_resize(&src, augment_center_crop(100, 50, 32), 32, 32, &out);
    assert_rgb(pixel(&out, 31, 31), 9, 99, 199);
    image_free(&out);
    image_free(&src);
}

int main(void) {
    const char *root = getenv("YP_SOURCE_ROOT");
    snprintf(source_root, sizeof source_root, "%s", root ? root : ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_size), cmocka_unit_test(test_resize_against_opencv),
        cmocka_unit_test(test_hsv_against_ultralytics), cmocka_unit_test(test_letterbox),
        cmocka_unit_test(test_flip), cmocka_unit_test(test_warp),
        cmocka_unit_test(test_mosaic_boxes_frame_objects), cmocka_unit_test(test_classify_crops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
