#include "framework/data/image_io.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "framework/core/fsutil.h"

// Larger images are refused before their pixels are allocated, so that a corrupt header cannot ask for
// gigabytes. 2^28 pixels (16384²) is far beyond any training image.
enum { IMAGE_MAX_SIDE = 65535 };
static const uint64_t IMAGE_MAX_PIXELS = 1ull << 28;

void image_alloc(Image *im, int width, int height) {
    YP_CHECK(width > 0 && height > 0);
    im->width = width;
    im->height = height;
    im->data = yp_malloc((size_t)width * (size_t)height * 3);
}

void image_free(Image *im) {
    free(im->data);
    *im = (Image){0};
}

static bool image_size_ok(uint64_t width, uint64_t height, const char *name, Error *err) {
    if (width == 0 || height == 0) return error_set(err, "%s: the image is empty (%llu x %llu pixels)", name,
                                                     (unsigned long long)width, (unsigned long long)height);
    if (width * height > IMAGE_MAX_PIXELS)
        return error_set(err, "%s: the image is too large (%llu x %llu pixels; at most 2^28 pixels are read)", name,
                         (unsigned long long)width, (unsigned long long)height);
    return true;
}

// ---- PNG ---------------------------------------------------------------------------------------------

// Where libpng's errors go, for reading and writing alike: the message, and a jump back to the caller.
typedef struct PngFailure {
    jmp_buf jump;
    char message[256];
} PngFailure;

static void png_on_error(png_structp png, png_const_charp message) {
    PngFailure *failure = png_get_error_ptr(png);
    snprintf(failure->message, sizeof failure->message, "%s", message);
    longjmp(failure->jump, 1);
}

typedef struct PngSource {
    const uint8_t *bytes;
    size_t n_bytes, offset;
} PngSource;

// Ancillary-chunk problems are warnings; OpenCV ignores them too.
static void png_on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_on_read(png_structp png, png_bytep out, size_t n_bytes) {
    PngSource *src = png_get_io_ptr(png);
    if (n_bytes > src->n_bytes - src->offset) png_error(png, "the file ends early (truncated)");
    memcpy(out, src->bytes + src->offset, n_bytes);
    src->offset += n_bytes;
}

static bool png_decode(const uint8_t *bytes, size_t n_bytes, const char *name, Image *out, Error *err) {
    PngSource src = {.bytes = bytes, .n_bytes = n_bytes};
    PngFailure failure;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, png_on_error, png_on_warning);
    YP_CHECK(png);
    png_infop info = png_create_info_struct(png);
    YP_CHECK(info);
    // Written after setjmp and read after a longjmp back to it, hence volatile.
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(failure.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return error_set(err, "%s: corrupt PNG: %s", name, failure.message);
    }
    png_set_read_fn(png, &src, png_on_read);
    png_set_user_limits(png, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if (!image_size_ok(width, height, name, err)) {
        png_destroy_read_struct(&png, &info, NULL);
        return false;
    }
    png_set_expand(png);       // palette → RGB, grey below 8 bits → 8 bits, tRNS → alpha
    png_set_strip_16(png);     // high byte, as OpenCV and PIL do
    png_set_strip_alpha(png);  // dropped, as cv2.imread(IMREAD_COLOR) does
    png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    YP_CHECK(png_get_rowbytes(png, info) == (size_t)width * 3);
    pixels = yp_malloc((size_t)width * height * 3);
    rows = yp_malloc(height * sizeof *rows);
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * width * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);  // a file cut after its pixel data still fails here
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *out = (Image){.width = (int)width, .height = (int)height, .data = pixels};
    return true;
}

// ---- JPEG --------------------------------------------------------------------------------------------

typedef struct JpegErrors {
    struct jpeg_error_mgr base;  // first, so libjpeg's pointer converts back
    jmp_buf jump;                // libjpeg errors return here instead of calling exit()
    char message[JMSG_LENGTH_MAX];
} JpegErrors;

static void jpeg_on_error(j_common_ptr cinfo) {
    JpegErrors *errors = (JpegErrors *)cinfo->err;
    cinfo->err->format_message(cinfo, errors->message);
    longjmp(errors->jump, 1);
}

// libjpeg reports data that ends early as a warning and fills the rest of the image with grey: that is
// a truncated file, so an error here. Other warnings (extraneous bytes, say) are accepted as OpenCV does.
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
}

static void jpeg_on_output(j_common_ptr cinfo) {
    (void)cinfo;
}

// (a·b)/255 rounded as PIL's MULDIV255.
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

// One CMYK row to RGB. Adobe's files store inverted inks (255 = none); `inverted` says which.
static void jpeg_cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width, bool inverted) {
    for (int x = 0; x < width; x++, cmyk += 4, rgb += 3) {
        int k = inverted ? cmyk[3] : 255 - cmyk[3];  // 255 - black ink
        for (int c = 0; c < 3; c++) {
            int ink = inverted ? 255 - cmyk[c] : cmyk[c];
            rgb[c] = (uint8_t)(k - muldiv255(ink, k));
        }
    }
}

static bool jpeg_decode(const uint8_t *bytes, size_t n_bytes, const char *name, Image *out, Error *err) {
    struct jpeg_decompress_struct cinfo;
    JpegErrors errors;
    cinfo.err = jpeg_std_error(&errors.base);
    errors.base.error_exit = jpeg_on_error;
    errors.base.emit_message = jpeg_on_message;
    errors.base.output_message = jpeg_on_output;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile cmyk_row = NULL;
    if (setjmp(errors.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(cmyk_row);
        return error_set(err, "%s: corrupt JPEG: %s", name, errors.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)n_bytes);
    jpeg_read_header(&cinfo, TRUE);
    if (!image_size_ok(cinfo.image_width, cinfo.image_height, name, err)) {
        jpeg_destroy_decompress(&cinfo);
        return false;
    }
    bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // libjpeg converts grey and YCbCr to RGB itself
    jpeg_start_decompress(&cinfo);
    int width = (int)cinfo.output_width, height = (int)cinfo.output_height;
    YP_CHECK(cinfo.output_components == (cmyk ? 4 : 3));
    pixels = yp_malloc((size_t)width * height * 3);
    if (cmyk) cmyk_row = yp_malloc((size_t)width * 4);
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *rgb = pixels + (size_t)cinfo.output_scanline * width * 3;
        JSAMPROW row = cmyk ? cmyk_row : rgb;
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (cmyk) jpeg_cmyk_to_rgb(cmyk_row, rgb, width, cinfo.saw_Adobe_marker);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk_row);
    *out = (Image){.width = width, .height = height, .data = pixels};
    return true;
}

// ---- by format ---------------------------------------------------------------------------------------

bool image_decode(const uint8_t *bytes, size_t n_bytes, const char *name, Image *out, Error *err) {
    *out = (Image){0};
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const uint8_t jpeg_magic[3] = {0xff, 0xd8, 0xff};
    if (n_bytes >= sizeof png_magic && !memcmp(bytes, png_magic, sizeof png_magic))
        return png_decode(bytes, n_bytes, name, out, err);
    if (n_bytes >= sizeof jpeg_magic && !memcmp(bytes, jpeg_magic, sizeof jpeg_magic))
        return jpeg_decode(bytes, n_bytes, name, out, err);
    if (n_bytes == 0) return error_set(err, "%s: the file is empty", name);
    return error_set(err, "%s: not a PNG or JPEG file (yolopipe reads those two formats)", name);
}

bool image_read(const char *path, Image *out, Error *err) {
    *out = (Image){0};
    char *bytes;
    size_t len;
    if (!fs_read_file(path, FS_READ_IMAGE, &bytes, &len, err)) return false;
    bool ok = image_decode((const uint8_t *)bytes, len, path, out, err);
    free(bytes);
    return ok;
}

bool image_write_png(const char *path, const Image *im, Error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return error_set(err, "%s: cannot create: %s", path, strerror(errno));
    PngFailure failure;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &failure, png_on_error, png_on_warning);
    YP_CHECK(png);
    png_infop info = png_create_info_struct(png);
    YP_CHECK(info);
    png_bytep *volatile rows = NULL;
    if (setjmp(failure.jump)) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        fclose(f);
        return error_set(err, "%s: cannot write the PNG: %s", path, failure.message);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)im->width, (png_uint_32)im->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    // Light compression: these files are datasets and debugging views, where writing speed matters
    // more than size (level 1 writes the default synthetic dataset 4.5x faster than the default level).
    png_set_compression_level(png, 1);
    rows = yp_malloc((size_t)im->height * sizeof *rows);
    for (int y = 0; y < im->height; y++) rows[y] = im->data + (size_t)y * im->width * 3;
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    if (fclose(f)) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    return true;
}

bool image_write_jpeg(const char *path, const Image *im, int quality, Error *err) {
    YP_CHECK(im->data && im->width > 0 && im->height > 0 && quality >= 1 && quality <= 100);
    FsAtomicFile *af;
    if (!fs_atomic_file_open(path, &af, err)) return false;
    struct jpeg_compress_struct cinfo;
    JpegErrors errors;
    cinfo.err = jpeg_std_error(&errors.base);
    errors.base.error_exit = jpeg_on_error;
    errors.base.output_message = jpeg_on_output;
    if (setjmp(errors.jump)) {
        jpeg_destroy_compress(&cinfo);
        fs_atomic_file_abort(af);
        return error_set(err, "%s: cannot write the JPEG: %s", path, errors.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, fs_atomic_file_stream(af));
    cinfo.image_width = (JDIMENSION)im->width;
    cinfo.image_height = (JDIMENSION)im->height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = im->data + (size_t)cinfo.next_scanline * (size_t)im->width * 3;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return fs_atomic_file_commit(af, err);
}
