// safetensors files (https://github.com/huggingface/safetensors), the format of checkpoints.
//
// Layout: 8-byte little-endian header length N; N bytes of UTF-8 JSON
//   {"__metadata__":{"key":"value",...},"<name>":{"dtype":"F32","shape":[2,3],"data_offsets":[b,e]},...}
// padded with spaces so that the data starts at a multiple of 8; then the data section, each
// tensor's little-endian bytes at [b, e) relative to the section's start, contiguous and covering
// the whole section.
//
// The writer packs tensors in the order given and writes the header as the reference
// implementation does (compact JSON, "__metadata__" first, space padding). The reader accepts
// every file the reference implementation writes and rejects with a user error ("path: what is
// wrong") a bad header length, invalid UTF-8 or JSON, a header not starting with '{', duplicate or
// unknown keys, unknown dtypes, more than SAFETENSORS_MAX_DIMS dimensions, NUL characters in
// strings, offsets that overlap, leave gaps or run past the file, sizes that disagree with
// dtype x shape. It is a strict parser for exactly this format, not a general JSON parser.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "framework/core/error.h"

// The reference implementation's dtypes, in its order (increasing alignment).
typedef enum SafetensorsDtype {
    SAFETENSORS_BOOL,
    SAFETENSORS_U8,
    SAFETENSORS_I8,
    SAFETENSORS_F8_E5M2,
    SAFETENSORS_F8_E4M3,
    SAFETENSORS_I16,
    SAFETENSORS_U16,
    SAFETENSORS_F16,
    SAFETENSORS_BF16,
    SAFETENSORS_I32,
    SAFETENSORS_U32,
    SAFETENSORS_F32,
    SAFETENSORS_F64,
    SAFETENSORS_I64,
    SAFETENSORS_U64,
    SAFETENSORS_DTYPE_COUNT
} SafetensorsDtype;

const char *safetensors_dtype_name(SafetensorsDtype dtype);  // "F32"
size_t safetensors_dtype_size(SafetensorsDtype dtype);       // bytes per element

enum {
    SAFETENSORS_MAX_DIMS = 8,
    SAFETENSORS_MAX_HEADER_BYTES = 100000000,  // the reference implementation's limit
};

// One tensor, for writing and as read.
typedef struct SafetensorsTensor {
    const char *name;
    SafetensorsDtype dtype;
    int ndim;                               // 0 for a scalar
    int64_t shape[SAFETENSORS_MAX_DIMS];
    // n_bytes = product(shape) * dtype size of little-endian data. As read, `data` points into the
    // file's buffer and may be unaligned for the element type: copy it out with memcpy.
    const void *data;
    size_t n_bytes;
} SafetensorsTensor;

typedef struct SafetensorsMetadata {
    const char *key, *value;
} SafetensorsMetadata;

// Writes the tensors (in the given order, with unique names other than "__metadata__") and the
// metadata (possibly none) to `path` atomically (framework/core/fsutil.h). Sizes, names and dims that
// break the rules above are the caller's bug and abort; I/O failures are returned in err.
bool safetensors_write(const char *path, const SafetensorsTensor *tensors, int n_tensors,
                       const SafetensorsMetadata *metadata, int n_metadata, Error *err);

// A file read into memory with its table of contents.
typedef struct SafetensorsFile {
    char *path;
    int n_tensors;
    SafetensorsTensor *tensors;  // in data order; names and data point into memory this object owns
    int n_metadata;
    SafetensorsMetadata *metadata;  // in file order
    unsigned char *bytes;           // the whole file
    size_t n_bytes;
} SafetensorsFile;

// Reads and validates `path`. The caller destroys *out.
bool safetensors_read(const char *path, SafetensorsFile **out, Error *err);
void safetensors_file_destroy(SafetensorsFile *file);  // accepts NULL

// The tensor or metadata value with that name, or NULL.
const SafetensorsTensor *safetensors_file_find(const SafetensorsFile *file, const char *name);
const char *safetensors_file_metadata(const SafetensorsFile *file, const char *key);

// Elements of a tensor: the product of its shape (1 for a scalar).
int64_t safetensors_tensor_elems(const SafetensorsTensor *t);
