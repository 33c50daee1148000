// Reads the reference files that the generators in tests/reference/ write: records of u32 name
// length, name, u32 element size (4: float32, 8: float64), u64 count, little-endian data.
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct Record {
    char name[160];
    int64_t count;
    double *values;  // converted from float32 or float64 (exact)
} Record;

typedef struct Reference {
    int n;
    Record *records;
} Reference;

// Loads every record of the file; fails the running test when it cannot. Free with reference_free.
Reference reference_load(const char *path);
void reference_free(Reference *ref);

// The record named prefix + name, or NULL.
const Record *reference_find(const Reference *ref, const char *prefix, const char *name);

// The record named name; fails the running test when it is missing.
const Record *reference_require(const Reference *ref, const char *name);

