// Fuzz target: a safetensors file (a checkpoint's stage file), through safetensors_read, and the
// round trip `yolopipe export` relies on: what the reader accepts, safetensors_write writes again
// (it aborts on what it considers a caller's bug) and the reader reads back the same tensors and
// metadata.
//
// Input: the file as it is (8-byte header length, JSON header, data).
// Checks, beyond the sanitizers: every tensor's bytes lie in the file and agree with dtype x shape;
// lookups by name find each tensor; a refused file leaves one non-empty line of error.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

static _Noreturn void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static void check_file(const SafetensorsFile *f) {
    for (int i = 0; i < f->n_tensors; i++) {
        const SafetensorsTensor *t = &f->tensors[i];
        const unsigned char *p = t->data;
        if ((size_t)safetensors_tensor_elems(t) * safetensors_dtype_size(t->dtype) != t->n_bytes)
            fail("tensor '%s': n_bytes disagrees with its dtype and shape", t->name);
        if (t->n_bytes && (p < f->bytes || p + t->n_bytes > f->bytes + f->n_bytes))
            fail("tensor '%s': data outside the file", t->name);
        if (safetensors_file_find(f, t->name) != t) fail("tensor '%s' is not found by its name", t->name);
    }
    for (int i = 0; i < f->n_metadata; i++)
        if (safetensors_file_metadata(f, f->metadata[i].key) != f->metadata[i].value)
            fail("metadata '%s' is not found by its key", f->metadata[i].key);
}

// The same tensors (in data order) and metadata (in file order).
static void check_same(const SafetensorsFile *a, const SafetensorsFile *b) {
    if (a->n_tensors != b->n_tensors || a->n_metadata != b->n_metadata) fail("the copy holds %d tensors and %d metadata, the file %d and %d", b->n_tensors, b->n_metadata, a->n_tensors, a->n_metadata);
    for (int i = 0; i < a->n_tensors; i++) {
        const SafetensorsTensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim || x->n_bytes != y->n_bytes ||
            memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof *x->shape) ||
            (x->n_bytes && memcmp(x->data, y->data, x->n_bytes)))
            fail("tensor '%s' reads back differently", x->name);
    }
    for (int i = 0; i < a->n_metadata; i++)
        if (strcmp(a->metadata[i].key, b->metadata[i].key) || strcmp(a->metadata[i].value, b->metadata[i].value))
            fail("metadata '%s' reads back differently", a->metadata[i].key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *input_path = fuzz_file("stage-0.safetensors"), *copy_path = fuzz_file("copy.safetensors");
    fuzz_write_file(input_path, data, size);
    SafetensorsFile *f = NULL;
    Error err = {0};
    if (!safetensors_read(input_path, &f, &err)) {
        fuzz_check_error(&err);
        return 0;
    }
    check_file(f);
    SafetensorsFile *copy = NULL;
    if (!safetensors_write(copy_path, f->tensors, f->n_tensors, f->metadata, f->n_metadata, &err) ||
        !safetensors_read(copy_path, &copy, &err))
        fail("the file written back does not read: %s", err.message);
    check_file(copy);
    check_same(f, copy);
    safetensors_file_destroy(copy);
    safetensors_file_destroy(f);
    return 0;
}
