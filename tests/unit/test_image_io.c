// Image decoding against independent decoders: PNG variants against what Ultralytics reads
// (cv2.imread, IMREAD_COLOR) and JPEGs against Pillow, fixtures written by
// tests/reference/make_image_reference.py. Broken files must fail with a message naming the file.
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

static char source_root[512];
static char temp_dir[256];

static uint8_t *read_bytes(const char *path, size_t *n_bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *bytes = malloc((size_t)n + 1);
    assert_int_equal(fread(bytes, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *n_bytes = (size_t)n;
    return bytes;
}

static void fixture_path(char *path, size_t cap, const char *name) {
    snprintf(path, cap, "%s/tests/reference/images/%s", source_root, name);
}

// Decodes fixture `name` and compares it with its .rgb twin; returns the largest difference.
static int compare_fixture(const char *name, int width, int height) {
    char path[1024], expected_path[1024];
    fixture_path(path, sizeof path, name);
    snprintf(expected_path, sizeof expected_path, "%.*s.rgb", (int)(strrchr(path, '.') - path), path);
    Image im;
    Error err = {0};
    if (!image_read(path, &im, &err)) fail_msg("%s", err.message);
    assert_int_equal(im.width, width);
    assert_int_equal(im.height, height);
    size_t n_bytes;
    uint8_t *expected = read_bytes(expected_path, &n_bytes);
    assert_int_equal(n_bytes, (size_t)width * height * 3);
    int worst = 0;
    for (size_t i = 0; i < n_bytes; i++) {
        int d = abs((int)im.data[i] - (int)expected[i]);
        if (d > worst) worst = d;
    }
    free(expected);
    image_free(&im);
    return worst;
}

// PNG is lossless and every conversion (palette, grey expansion, high byte of 16-bit samples,
// dropping alpha) is defined exactly: no tolerance.
static void test_png_variants(void **state) {
    (void)state;
    static const char *const names[] = {"png_rgb8.png",  "png_rgba8.png",   "png_grey8.png",     "png_grey1.png",
                                        "png_grey16.png", "png_rgb16.png",  "png_rgba16.png",   "png_palette.png",
                                        "png_greyalpha8.png"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        int worst = compare_fixture(names[i], 17, 13);
        if (worst) fail_msg("%s differs from cv2.imread by %d levels", names[i], worst);
    }
}

// Pillow decodes with its own build of libjpeg-turbo (same integer IDCT and upsampling): 1 level
// allows for rounding differences between its SIMD colour conversion and ours; CMYK → RGB uses
// Pillow's formula.
static void test_jpeg_against_pillow(void **state) {
    (void)state;
    static const char *const names[] = {"jpeg_rgb.jpg", "jpeg_grey.jpg", "jpeg_cmyk.jpg"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        int worst = compare_fixture(names[i], 56, 40);
        if (worst > 1) fail_msg("%s differs from Pillow by %d levels", names[i], worst);
    }
}

// Every strict prefix of a valid file is a truncated file and must fail cleanly.
static void check_all_prefixes_fail(const char *name, const char *expected_kind) {
    char path[1024];
    fixture_path(path, sizeof path, name);
    size_t n_bytes;
    uint8_t *bytes = read_bytes(path, &n_bytes);
    Image im;
    Error err = {0};
    assert_true(image_decode(bytes, n_bytes, name, &im, &err));
    image_free(&im);
    for (size_t n = 0; n < n_bytes; n++) {
        err = (Error){0};
        if (image_decode(bytes, n, name, &im, &err)) fail_msg("%s cut to %zu of %zu bytes decoded", name, n, n_bytes);
        assert_null(im.data);
        assert_true(!strncmp(err.message, name, strlen(name)));
        // Cut inside the signature it is no longer recognised; past it the decoder reports corruption.
        if (n >= 8 && !strstr(err.message, expected_kind)) fail_msg("cut to %zu: %s", n, err.message);
    }
    free(bytes);
}

static void test_truncated_png(void **state) {
    (void)state;
    check_all_prefixes_fail("png_rgb8.png", "corrupt PNG");
    check_all_prefixes_fail("png_palette.png", "corrupt PNG");
}

static void test_truncated_jpeg(void **state) {
    (void)state;
    check_all_prefixes_fail("jpeg_rgb.jpg", "corrupt JPEG");
    check_all_prefixes_fail("jpeg_cmyk.jpg", "corrupt JPEG");
}

static void write_file(const char *path, const void *bytes, size_t n_bytes) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n_bytes, f), n_bytes);
    fclose(f);
}

static void test_bad_files(void **state) {
    (void)state;
    char path[512], expected[1024];
    Image im;
    Error err = {0};

    snprintf(path, sizeof path, "%s/notes.jpg", temp_dir);
    write_file(path, "class cx cy w h\n", 16);
    assert_false(image_read(path, &im, &err));
    snprintf(expected, sizeof expected, "%s: not a PNG or JPEG file (yolopipe reads those two formats)", path);
    assert_string_equal(err.message, expected);

    snprintf(path, sizeof path, "%s/empty.png", temp_dir);
    write_file(path, "", 0);
    assert_false(image_read(path, &im, &err));
    snprintf(expected, sizeof expected, "%s: the file is empty", path);
    assert_string_equal(err.message, expected);

    snprintf(path, sizeof path, "%s/missing.png", temp_dir);
    assert_false(image_read(path, &im, &err));
    snprintf(expected, sizeof expected, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err.message, expected);

    // Not files at all: a folder named like an image, and a device that never ends (read whole, it
    // would exhaust memory).
    snprintf(path, sizeof path, "%s/folder.png", temp_dir);
    assert_int_equal(mkdir(path, 0777), 0);
    assert_false(image_read(path, &im, &err));
    snprintf(expected, sizeof expected, "%s: is a directory", path);
    assert_string_equal(err.message, expected);
    assert_false(image_read("/dev/zero", &im, &err));
    assert_string_equal(err.message, "/dev/zero: not a regular file (a device, FIFO or socket)");
    // Over the 256 MiB cap for images: a sparse file, nothing written.
    snprintf(path, sizeof path, "%s/huge.png", temp_dir);
    write_file(path, "", 0);
    assert_int_equal(truncate(path, (off_t)257 << 20), 0);
    assert_false(image_read(path, &im, &err));
    snprintf(expected, sizeof expected, "%s: larger than the 256 MiB limit for images", path);
    assert_string_equal(err.message, expected);

    // A flipped bit in the pixel data fails the chunk's CRC.
    char fixture[1024];
    fixture_path(fixture, sizeof fixture, "png_rgb8.png");
    size_t n_bytes;
    uint8_t *bytes = read_bytes(fixture, &n_bytes);
    bytes[n_bytes - 30] ^= 0x10;
    assert_false(image_decode(bytes, n_bytes, "flipped.png", &im, &err));
    assert_non_null(strstr(err.message, "flipped.png: corrupt PNG: "));
    free(bytes);
}

static void test_png_round_trip(void **state) {
    (void)state;
    Image im;
    image_alloc(&im, 23, 9);
    for (int i = 0; i < 23 * 9 * 3; i++) im.data[i] = (uint8_t)(i * 37 + 11);
    char path[512];
    snprintf(path, sizeof path, "%s/round.png", temp_dir);
    Error err = {0};
    if (!image_write_png(path, &im, &err)) fail_msg("%s", err.message);
    Image back;
    if (!image_read(path, &back, &err)) fail_msg("%s", err.message);
    assert_int_equal(back.width, 23);
    assert_int_equal(back.height, 9);
    assert_memory_equal(back.data, im.data, 23 * 9 * 3);
    image_free(&back);
    image_free(&im);
    image_free(&im);  // freeing an empty image is allowed
}

int main(void) {
    const char *root = getenv("YP_SOURCE_ROOT");
    snprintf(source_root, sizeof source_root, "%s", root ? root : ".");
    snprintf(temp_dir, sizeof temp_dir, "/tmp/yp_image_io_XXXXXX");
    if (!mkdtemp(temp_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_variants),   cmocka_unit_test(test_jpeg_against_pillow),
        cmocka_unit_test(test_truncated_png),  cmocka_unit_test(test_truncated_jpeg),
        cmocka_unit_test(test_bad_files),      cmocka_unit_test(test_png_round_trip),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    if (system(command) != 0) failed = 1;
    return failed;
}
