// Reader for the fixture files that tests/reference/make_*_reference.py write: records of
// u32 name length, name, u32 element size (4 or 8), u64 count, little-endian data.
#pragma once

#include <stdint.h>

typedef struct Record {
    char name[160];
    int64_t count;
    double *values;  // converted from float32 or float64
} Record;

typedef struct Reference {
    int n;
    Record *records;  // owned; free with reference_free
} Reference;

// Reads every record of the file at `path`; fails the running cmocka test when it cannot.
Reference reference_load(const char *path);
void reference_free(Reference *ref);

// The record named prefix + name, or NULL.
const Record *reference_find(const Reference *ref, const char *prefix, const char *name);
