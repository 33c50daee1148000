// Boxes, labels and grids drawn by framework/eval/draw.c, checked pixel by pixel against the look
// Ultralytics' Annotator and plot_images define (ultralytics/utils/plotting.py): the palette values
// are Ultralytics' Colors table, copied here by hand as the independent reference; outline width and
// placement follow PIL's ImageDraw.rectangle (outline grows inwards from the given corners). Text
// pixels are antialiased, so they are only checked to differ from the background. Also the JPEG
// writer: read back with image_read, within JPEG's quantisation error.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/eval/draw.h"

enum { W = 200, H = 160, GREY = 100 };
static char temp_dir[256];

static void fill_grey(Image *im, int w, int h) {
    image_alloc(im, w, h);
    memset(im->data, GREY, (size_t)w * h * 3);
}

static const uint8_t *px(const Image *im, int x, int y) {
    return im->data + ((size_t)y * im->width + x) * 3;
}

static bool is_rgb(const Image *im, int x, int y, int r, int g, int b) {
    const uint8_t *p = px(im, x, y);
    return p[0] == r && p[1] == g && p[2] == b;
}

static bool is_grey(const Image *im, int x, int y) {
    return is_rgb(im, x, y, GREY, GREY, GREY);
}

// Pixels of the rectangle [x0, x1) × [y0, y1) that are not the background.
static int count_changed(const Image *im, int x0, int y0, int x1, int y1) {
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) n += !is_grey(im, x, y);
    return n;
}

static void test_palette_and_style(void **state) {
    (void)state;
    uint8_t rgb[3];
    draw_class_color(0, rgb);  // Colors: "042AFF", "0BDBEB", ..., "A2FF0B" (20 entries)
    assert_true(rgb[0] == 0x04 && rgb[1] == 0x2a && rgb[2] == 0xff);
    draw_class_color(19, rgb);
    assert_true(rgb[0] == 0xa2 && rgb[1] == 0xff && rgb[2] == 0x0b);
    draw_class_color(21, rgb);  // wraps around: colors(i) uses i % 20
    assert_true(rgb[0] == 0x0b && rgb[1] == 0xdb && rgb[2] == 0xeb);
    // Line width max(round((w + h) / 2 * 0.003), 2): 2 up to 1000 px mean side, 3 at 1920x1080.
    assert_int_equal(draw_style_for(640, 480).line_width, 2);
    assert_int_equal(draw_style_for(1920, 1080).line_width, 4);  // 1500 * 0.003 = 4.5 rounds to even 4
    assert_int_equal(draw_style_for(2000, 2000).line_width, 6);
    assert_true(draw_style_for(64, 64).font_px == 12);
    assert_true(draw_style_for(640, 640).font_px == 22);
}

// A box in the middle: its two-pixel outline in palette colour 0 on all four sides, the inside and
// the outside beside it untouched, its label in the rows just above its top edge.
static void test_box_edges_and_label(void **state) {
    (void)state;
    Image im;
    fill_grey(&im, W, H);
    const char *names[] = {"cat"};
    DrawBox box = {.x1 = 50, .y1 = 80, .x2 = 150, .y2 = 140, .cls = 0, .conf = -1};
    draw_boxes(&im, &box, 1, names, 1);
    for (int y = 82; y <= 138; y += 7) {
        assert_true(is_rgb(&im, 50, y, 4, 42, 255) && is_rgb(&im, 51, y, 4, 42, 255));
        assert_true(is_rgb(&im, 150, y, 4, 42, 255) && is_rgb(&im, 149, y, 4, 42, 255));
        assert_true(is_grey(&im, 49, y) && is_grey(&im, 52, y) && is_grey(&im, 148, y) && is_grey(&im, 151, y));
    }
    for (int x = 60; x <= 140; x += 9) {
        assert_true(is_rgb(&im, x, 80, 4, 42, 255) && is_rgb(&im, x, 81, 4, 42, 255));
        assert_true(is_rgb(&im, x, 140, 4, 42, 255) && is_rgb(&im, x, 139, 4, 42, 255));
        assert_true(is_grey(&im, x, 82) && is_grey(&im, x, 138) && is_grey(&im, x, 141));
    }
    assert_int_equal(count_changed(&im, 52, 82, 149, 139), 0);  // inside untouched
    // The label: a filled rectangle of the box colour starting at x1, ending just above the top edge
    // (12 px font: about 14 rows), with white text on it (class 0 is a dark colour).
    assert_true(is_rgb(&im, 50, 78, 4, 42, 255) && is_rgb(&im, 50, 68, 4, 42, 255));
    assert_true(is_grey(&im, 49, 75));
    int label_rows = 0, light = 0;
    for (int y = 0; y < 80; y++) label_rows += !is_grey(&im, 51, y);
    assert_in_range(label_rows, 12, 18);
    assert_int_equal(count_changed(&im, 0, 0, W, 80 - 18), 0);  // nothing higher up
    for (int y = 60; y < 80; y++)
        for (int x = 50; x < 90; x++) light += px(&im, x, y)[0] > 200 && px(&im, x, y)[1] > 200;
    assert_true(light > 5);  // white text pixels on the blue label
    image_free(&im);
}

// A box at the top of the image has no room above: the label goes inside, below its top edge.
static void test_label_inside_when_no_room(void **state) {
    (void)state;
    Image im;
    fill_grey(&im, W, H);
    DrawBox box = {.x1 = 40, .y1 = 3, .x2 = 160, .y2 = 100, .cls = 1, .conf = 0.87f};
    draw_boxes(&im, &box, 1, NULL, 0);
    assert_int_equal(count_changed(&im, 0, 0, W, 3), 0);
    assert_true(is_rgb(&im, 41, 10, 0x0b, 0xdb, 0xeb));  // label background inside the box
    assert_true(count_changed(&im, 52, 6, 148, 15) > 100);
    image_free(&im);
}

// Boxes cut by the image border keep their outline along the border; a label near the right edge is
// shifted left to stay inside.
static void test_clipping_at_borders(void **state) {
    (void)state;
    Image im;
    fill_grey(&im, W, H);
    DrawBox boxes[] = {
        {.x1 = -30, .y1 = 40, .x2 = 20, .y2 = 90, .cls = 2, .conf = -1},
        {.x1 = 170, .y1 = 60, .x2 = 400, .y2 = 500, .cls = 3, .conf = -1},
    };
    draw_boxes(&im, boxes, 2, NULL, 0);
    assert_true(is_rgb(&im, 0, 65, 0xf3, 0xf3, 0xf3) && is_rgb(&im, 1, 65, 0xf3, 0xf3, 0xf3));
    assert_true(is_rgb(&im, 20, 65, 0xf3, 0xf3, 0xf3) && is_grey(&im, 2, 65));
    assert_true(is_rgb(&im, W - 1, 100, 0x00, 0xdf, 0xb7) && is_rgb(&im, 185, H - 1, 0x00, 0xdf, 0xb7));
    assert_true(is_grey(&im, 185, 100));
    image_free(&im);
}

// NULL names (or a class outside them) label with the class index: the same pixels as names "7".
static void test_null_names(void **state) {
    (void)state;
    const char *names[] = {"0", "1", "2", "3", "4", "5", "6", "7"};
    DrawBox box = {.x1 = 30, .y1 = 50, .x2 = 120, .y2 = 110, .cls = 7, .conf = 0.5f};
    Image a, b, c;
    fill_grey(&a, W, H);
    fill_grey(&b, W, H);
    fill_grey(&c, W, H);
    draw_boxes(&a, &box, 1, NULL, 0);
    draw_boxes(&b, &box, 1, names, 8);
    draw_boxes(&c, &box, 1, names, 3);  // class 7 beyond nc = 3
    assert_memory_equal(a.data, b.data, (size_t)W * H * 3);
    assert_memory_equal(a.data, c.data, (size_t)W * H * 3);
    char buf[16];
    draw_class_name(7, NULL, 0, buf, sizeof buf);
    assert_string_equal(buf, "7");
    draw_class_name(-1, names, 8, buf, sizeof buf);
    assert_string_equal(buf, "-1");
    image_free(&a);
    image_free(&b);
    image_free(&c);
}

// Boxes entirely outside, inverted, non-finite or huge leave the image as it was (or clipped).
static void test_outside_and_degenerate(void **state) {
    (void)state;
    Image im;
    fill_grey(&im, W, H);
    DrawBox boxes[] = {
        {.x1 = 300, .y1 = 300, .x2 = 400, .y2 = 400, .cls = 0, .conf = -1},
        {.x1 = -50, .y1 = -50, .x2 = -10, .y2 = -10, .cls = 0, .conf = -1},
        {.x1 = 80, .y1 = 80, .x2 = 60, .y2 = 100, .cls = 0, .conf = -1},  // x2 < x1
        {.x1 = NAN, .y1 = 10, .x2 = 50, .y2 = 50, .cls = 0, .conf = -1},
        {.x1 = 10, .y1 = 10, .x2 = INFINITY, .y2 = 50, .cls = 0, .conf = -1},
        {.x1 = W, .y1 = 0, .x2 = W + 5, .y2 = H, .cls = 0, .conf = -1},  // just right of the image
    };
    draw_boxes(&im, boxes, 6, NULL, 0);
    assert_int_equal(count_changed(&im, 0, 0, W, H), 0);
    draw_boxes(&im, boxes, 0, NULL, 0);
    // A single-pixel box and one of astronomical size draw without trouble.
    DrawBox odd[] = {
        {.x1 = 100, .y1 = 100, .x2 = 100, .y2 = 100, .cls = 4, .conf = 0.3f},
        {.x1 = -1e30f, .y1 = -1e30f, .x2 = 1e30f, .y2 = 1e30f, .cls = 5, .conf = 2.0f},
    };
    draw_boxes(&im, odd, 2, NULL, 0);
    assert_true(is_rgb(&im, 0, H / 2, 0xff, 0x6f, 0xdd) && is_rgb(&im, W - 1, H / 2, 0xff, 0x6f, 0xdd));
    image_free(&im);
}

// plot_images' layout: ceil(sqrt(5)) = 3 cells a side, filled column by column, white lines round
// each cell, tile pixels where they belong; boxes follow their tile.
static void test_grid_layout(void **state) {
    (void)state;
    Image tiles_im[5];
    DrawTile tiles[5];
    // The second box touches its tile's top: its label goes inside, never onto the tile above.
    DrawBox box[] = {{.x1 = 10, .y1 = 30, .x2 = 60, .y2 = 70, .cls = 6, .conf = -1},
                     {.x1 = 5, .y1 = 2, .x2 = 70, .y2 = 20, .cls = 0, .conf = 0.5f}};
    for (int i = 0; i < 5; i++) {
        image_alloc(&tiles_im[i], 80, 90);
        memset(tiles_im[i].data, 10 * (i + 1), 80 * 90 * 3);
        tiles[i] = (DrawTile){.image = &tiles_im[i], .boxes = i == 4 ? box : NULL, .n_boxes = i == 4 ? 2 : 0, .cls = -1};
    }
    Image grid;
    draw_grid(tiles, 5, NULL, 0, &grid);
    assert_int_equal(grid.width, 3 * 80);
    assert_int_equal(grid.height, 3 * 90);
    // Tile i at column i / 3, row i % 3.
    for (int i = 0; i < 5; i++) {
        int x = 80 * (i / 3), y = 90 * (i % 3), v = 10 * (i + 1);
        assert_true(is_rgb(&grid, x + 40, y + 85, v, v, v));
        assert_true(is_rgb(&grid, x, y + 45, 255, 255, 255) && is_rgb(&grid, x + 1, y + 45, 255, 255, 255));
        assert_true(is_rgb(&grid, x + 79, y + 45, 255, 255, 255));
    }
    assert_true(is_rgb(&grid, 200, 200, 255, 255, 255));  // cells without a tile stay white
    // Tile 4's box at (80 + 10, 90 + 30): palette 6 on its left edge.
    assert_true(is_rgb(&grid, 90, 90 + 50, 0xff, 0x44, 0x4f));
    assert_true(is_rgb(&grid, 140, 90 + 50, 0xff, 0x44, 0x4f));
    for (int x = 82; x < 158; x++) assert_true(is_rgb(&grid, x, 87, 40, 40, 40));  // tile 3's bottom rows
    image_free(&grid);

    // A long side over 1920 px shrinks every tile (and its boxes) to fit.
    Image big;
    image_alloc(&big, 3000, 1000);
    memset(big.data, 50, (size_t)3000 * 1000 * 3);
    DrawBox wide = {.x1 = 1500, .y1 = 500, .x2 = 2999, .y2 = 900, .cls = 6, .conf = 0.91f};
    DrawTile one = {.image = &big, .title = "a-very-long-file-name-that-is-cut-at-forty-bytes.jpg",
                    .boxes = &wide, .n_boxes = 1, .cls = 3, .conf = 0.5f};
    draw_grid(&one, 1, NULL, 0, &grid);
    assert_int_equal(grid.width, 1920);
    assert_int_equal(grid.height, 640);
    assert_true(is_rgb(&grid, 960, 400, 0xff, 0x44, 0x4f));  // left edge of the box, scaled by 0.64
    assert_true(count_changed(&grid, 5, 5, 400, 60) > 0);    // title and class text drawn
    image_free(&grid);
    image_free(&big);
    for (int i = 0; i < 5; i++) image_free(&tiles_im[i]);
}

// JPEG written and read back: same size, pixels within the quantisation error of quality 95 on a
// smooth gradient (at most 12 levels anywhere, 2 on average).
static void test_jpeg_round_trip(void **state) {
    (void)state;
    Image im;
    image_alloc(&im, 67, 45);
    for (int y = 0; y < 45; y++)
        for (int x = 0; x < 67; x++) {
            uint8_t *p = im.data + ((size_t)y * 67 + x) * 3;
            p[0] = (uint8_t)(x * 3), p[1] = (uint8_t)(y * 5), p[2] = (uint8_t)(128 + x - y);
        }
    char path[512];
    snprintf(path, sizeof path, "%s/round.jpg", temp_dir);
    Error err = {0};
    if (!image_write_jpeg(path, &im, 95, &err)) fail_msg("%s", err.message);
    Image back;
    if (!image_read(path, &back, &err)) fail_msg("%s", err.message);
    assert_int_equal(back.width, 67);
    assert_int_equal(back.height, 45);
    int worst = 0;
    double sum = 0;
    for (size_t i = 0; i < (size_t)67 * 45 * 3; i++) {
        int d = abs((int)back.data[i] - (int)im.data[i]);
        worst = d > worst ? d : worst;
        sum += d;
    }
    assert_in_range(worst, 0, 12);
    assert_true(sum / (67 * 45 * 3) < 2.0);
    image_free(&back);
    // Overwriting leaves no temporary file beside it.
    if (!image_write_jpeg(path, &im, 50, &err)) fail_msg("%s", err.message);
    char command[800];
    snprintf(command, sizeof command, "test $(ls '%s' | wc -l) -eq 1", temp_dir);
    assert_int_equal(system(command), 0);
    image_free(&im);
}

static void test_jpeg_unwritable(void **state) {
    (void)state;
    Image im;
    fill_grey(&im, 8, 8);
    Error err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/no-such-folder/x.jpg", temp_dir);
    assert_false(image_write_jpeg(path, &im, 90, &err));
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "cannot create: No such file or directory"));
    assert_null(strchr(err.message, '\n'));
    // A folder where the file should be is refused, never replaced.
    assert_false(image_write_jpeg(temp_dir, &im, 90, &err));
    assert_non_null(strstr(err.message, "is a directory"));
    image_free(&im);
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/yp_draw_XXXXXX");
    if (!mkdtemp(temp_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_palette_and_style),   cmocka_unit_test(test_box_edges_and_label),
        cmocka_unit_test(test_label_inside_when_no_room), cmocka_unit_test(test_clipping_at_borders),
        cmocka_unit_test(test_null_names),          cmocka_unit_test(test_outside_and_degenerate),
        cmocka_unit_test(test_grid_layout),         cmocka_unit_test(test_jpeg_round_trip),
        cmocka_unit_test(test_jpeg_unwritable),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    if (system(command) != 0) failed = 1;
    return failed;
}
