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

// tests/reference/pending_models.txt: the models (of the reference tables and of the tiny forward
// fixtures) whose modules are not implemented yet, one name a line, '#' lines are comments. Their
// rows are skipped; test_model_reference fails once one of them loads, so the list only shrinks.
enum { PENDING_MAX_MODELS = 128, PENDING_MAX_NAME = 64 };
typedef struct PendingModels {
    int n;
    char names[PENDING_MAX_MODELS][PENDING_MAX_NAME];
} PendingModels;

// Reads the list under source_root; fails the running test on a malformed or duplicated line.
void pending_models_load(const char *source_root, PendingModels *out);
bool pending_models_has(const PendingModels *p, const char *name);
