#include "tests/common/reference_file.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

Reference reference_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    Reference ref = {0};
    uint32_t name_len;
    while (fread(&name_len, sizeof name_len, 1, f) == 1) {
        ref.records = realloc(ref.records, (size_t)(ref.n + 1) * sizeof *ref.records);
        Record *r = &ref.records[ref.n++];
        uint32_t elem;
        uint64_t count;
        assert_true(name_len < sizeof r->name);
        assert_int_equal(fread(r->name, 1, name_len, f), name_len);
        r->name[name_len] = '\0';
        assert_int_equal(fread(&elem, sizeof elem, 1, f), 1);
        assert_int_equal(fread(&count, sizeof count, 1, f), 1);
        r->count = (int64_t)count;
        r->values = malloc((size_t)(count ? count : 1) * sizeof *r->values);
        for (uint64_t i = 0; i < count; i++) {
            if (elem == 4) {
                float v;
                assert_int_equal(fread(&v, 4, 1, f), 1);
                r->values[i] = v;
            } else {
                assert_int_equal(elem, 8);
                assert_int_equal(fread(&r->values[i], 8, 1, f), 1);
            }
        }
    }
    fclose(f);
    return ref;
}

void reference_free(Reference *ref) {
    for (int i = 0; i < ref->n; i++) free(ref->records[i].values);
    free(ref->records);
}

const Record *reference_find(const Reference *ref, const char *prefix, const char *name) {
    char key[200];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    for (int i = 0; i < ref->n; i++)
        if (!strcmp(ref->records[i].name, key)) return &ref->records[i];
    return NULL;
}

const Record *reference_require(const Reference *ref, const char *name) {
    const Record *r = reference_find(ref, "", name);
    if (!r) fail_msg("no record %s in the reference file", name);
    return r;
}

void pending_models_load(const char *source_root, PendingModels *out) {
    char path[1024], line[256];
    snprintf(path, sizeof path, "%s/tests/reference/pending_models.txt", source_root);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    out->n = 0;
    for (int lineno = 1; fgets(line, sizeof line, f); lineno++) {
        size_t len = strcspn(line, "\r\n");
        if (line[len] == '\0' && !feof(f)) fail_msg("%s:%d: line too long", path, lineno);
        line[len] = '\0';
        if (line[0] == '#' || len == 0) continue;
        if (len >= PENDING_MAX_NAME || strcspn(line, " \t") != len)
            fail_msg("%s:%d: '%s' is not a model name (one name a line, no spaces, under %d characters)", path, lineno,
                     line, PENDING_MAX_NAME);
        if (pending_models_has(out, line)) fail_msg("%s:%d: %s is listed twice", path, lineno, line);
        if (out->n == PENDING_MAX_MODELS) fail_msg("%s:%d: more than %d models", path, lineno, PENDING_MAX_MODELS);
        memcpy(out->names[out->n++], line, len + 1);
    }
    fclose(f);
}

bool pending_models_has(const PendingModels *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->names[i], name)) return true;
    return false;
}
