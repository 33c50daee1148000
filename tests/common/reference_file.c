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
