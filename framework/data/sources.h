// What `yolopipe predict` runs on: its SOURCE arguments expanded into image paths.
#pragma once

#include <stdint.h>
#include <stdio.h>

typedef struct SourceList {
    int64_t n;
    char **paths;  // owned, in argument order; a folder's images sorted (framework/data/dataset.h)
} SourceList;

// Expands each argument into out (empty at the call): a folder gives its images, a `.txt` file the
// images it lists (one path per line, relative to its folder), any other file itself (whether it
// decodes is found out when it is read). An argument that names nothing, cannot be listed or holds
// no images is reported as one line "path: reason, skipped" on `report` and adds nothing. The caller
// frees out with source_list_free.
void source_list_expand(char *const *args, int n_args, FILE *report, SourceList *out);
void source_list_free(SourceList *list);
