// Images as the data pipeline handles them: 8-bit RGB, rows top to bottom, pixels interleaved (HWC).
//
// Decoding follows what Ultralytics sees through cv2.imread(IMREAD_COLOR), then BGR→RGB:
//   PNG  (libpng): any bit depth; palette and grey expanded to RGB; 16-bit samples keep their high
//        byte; an alpha channel is dropped (not composited); gamma chunks are ignored.
//   JPEG (libjpeg): grey, YCbCr/RGB and CMYK/YCCK (Adobe's inverted convention) → RGB.
// The format is chosen by the file's first bytes, never by its name. A file that is neither, or a
// corrupt or truncated one (including a JPEG whose data ends early, which libjpeg would otherwise fill
// with grey), is a user error "path: message"; no input makes the process crash or exit.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "framework/core/error.h"

typedef struct Image {
    int width, height;
    uint8_t *data;  // (height, width, 3) RGB; owned, freed by image_free
} Image;

// Allocates an uninitialised width × height image into *im (which holds nothing yet).
void image_alloc(Image *im, int width, int height);

// Frees im->data and zeroes *im; accepts an image that holds nothing.
void image_free(Image *im);

// Decodes the file at `path` into *out (which holds nothing yet; the caller frees it with image_free).
// On failure *out stays empty and err reads "path: what is wrong".
bool image_read(const char *path, Image *out, Error *err);

// The same from bytes in memory; `name` only labels error messages.
bool image_decode(const uint8_t *bytes, size_t n_bytes, const char *name, Image *out, Error *err);

// Writes an 8-bit RGB PNG with fast, light compression (synthetic datasets, test data, debugging views).
// libpng adds no time stamp, so equal pixels give equal files.
bool image_write_png(const char *path, const Image *im, Error *err);

// Writes a baseline JPEG (4:2:0, `quality` 1..100 as libjpeg's scale) for the pictures a run leaves
// for people to look at. The file is written to a temporary name and renamed into place
// (framework/core/fsutil's atomic file), so a reader never sees half a picture. On failure the old
// file (if any) is untouched and err reads "path: what failed".
bool image_write_jpeg(const char *path, const Image *im, int quality, Error *err);
