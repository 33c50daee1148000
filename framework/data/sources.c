#include "framework/data/sources.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "framework/core/error.h"
#include "framework/data/dataset.h"

static bool ends_with_txt(const char *path) {
    size_t n = strlen(path);
    return n > 4 && !strcmp(path + n - 4, ".txt");
}

void source_list_expand(char *const *args, int n_args, FILE *report, SourceList *out) {
    *out = (SourceList){0};
    for (int i = 0; i < n_args; i++) {
        const char *arg = args[i];
        struct stat st;
        if (stat(arg, &st) != 0) {
            fprintf(report, "%s: no such file or folder, skipped\n", arg);
            continue;
        }
        if (!S_ISDIR(st.st_mode) && !ends_with_txt(arg)) {
            out->paths = yp_realloc(out->paths, (size_t)(out->n + 1) * sizeof *out->paths);
            out->paths[out->n++] = yp_strdup(arg);
            continue;
        }
        int64_t before = out->n;
        Error err = {0};
        if (!dataset_list_images(arg, &out->n, &out->paths, &err)) {
            fprintf(report, "%s, skipped\n", err.message);
            while (out->n > before) free(out->paths[--out->n]);  // what a folder gave before it failed
        } else if (out->n == before)
            fprintf(report, "%s: no images (looked for .jpg, .png and Ultralytics' other image extensions), skipped\n",
                    arg);
    }
}

void source_list_free(SourceList *list) {
    for (int64_t i = 0; i < list->n; i++) free(list->paths[i]);
    free(list->paths);
    *list = (SourceList){0};
}
