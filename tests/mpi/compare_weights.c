// compare_weights A B TOL [buffers] [floor=F]: compares the model's parameters ("model.*" tensors;
// not the "ema.", "grad." or "optimizer." ones) of checkpoint directories A and B, which may come
// from different partitionings; with `buffers`, the batch norms' running statistics too (equal only
// without replicas: replicas average theirs). Prints the largest relative difference
// max|a - b| / max(max|b|, F) over the tensors (F = 0 unless given) and exits 1 when it exceeds TOL, a
// tensor is missing or a value is not finite. The floor is for tensors whose exact gradient is 0
// (a bias that a training-mode batch norm after it cancels), which hold float noise of ~1e-9 that
// a change of summation order changes by a large fraction of itself.
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/path.h"
#include "framework/core/safetensors.h"

enum { MAX_STAGES = 64 };

static int open_stages(const char *dir, SafetensorsFile **files) {
    int n = 0;
    for (; n < MAX_STAGES; n++) {
        char path[PATH_MAX];
        Error err = {0};
        if (!path_format(path, sizeof path, &err, "%s/stage-%d.safetensors", dir, n)) {
            fprintf(stderr, "%s\n", err.message);
            exit(2);
        }
        FILE *probe = fopen(path, "rb");
        if (!probe) break;
        fclose(probe);
        if (!safetensors_read(path, &files[n], &err)) {
            fprintf(stderr, "%s\n", err.message);
            exit(2);
        }
    }
    return n;
}

static const SafetensorsTensor *find(SafetensorsFile **files, int n, const char *name) {
    for (int k = 0; k < n; k++) {
        const SafetensorsTensor *t = safetensors_file_find(files[k], name);
        if (t) return t;
    }
    return NULL;
}

// The comparison of the files of B with those of A (names for messages); returns the exit status.
static int compare(SafetensorsFile **a, int na, SafetensorsFile **b, int nb, double tol, bool buffers, double floor,
                   const char *prog, const char *a_dir) {
    double worst = 0;
    const char *worst_name = "";
    int compared = 0;
    for (int k = 0; k < nb; k++)
        for (int i = 0; i < b[k]->n_tensors; i++) {
            const SafetensorsTensor *tb = &b[k]->tensors[i];
            bool running = strstr(tb->name, ".running_") != NULL;
            if (strncmp(tb->name, "model.", 6) || tb->dtype != SAFETENSORS_F32 || (running && !buffers)) continue;
            const SafetensorsTensor *ta = find(a, na, tb->name);
            if (!ta || ta->n_bytes != tb->n_bytes) {
                fprintf(stderr, "%s: tensor %s missing or of another size in %s\n", prog, tb->name, a_dir);
                return 1;
            }
            const float *x = ta->data, *y = tb->data;
            double diff = 0, scale = floor > 1e-30 ? floor : 1e-30;
            for (size_t e = 0; e < tb->n_bytes / sizeof(float); e++) {
                if (!isfinite(x[e]) || !isfinite(y[e])) {
                    fprintf(stderr, "%s: tensor %s has a non-finite value at %zu\n", prog, tb->name, e);
                    return 1;
                }
                double d = x[e] > y[e] ? x[e] - y[e] : y[e] - x[e], m = y[e] > 0 ? y[e] : -y[e];
                if (d > diff) diff = d;
                if (m > scale) scale = m;
            }
            if (diff / scale > worst) worst = diff / scale, worst_name = tb->name;
            compared++;
        }
    printf("%d tensors, largest relative difference %.3g (%s)\n", compared, worst, worst_name);
    return compared > 0 && worst <= tol ? 0 : 1;
}

int main(int argc, char **argv) {
    bool buffers = false;
    double floor = 0;
    bool usage_ok = argc >= 4;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "buffers")) buffers = true;
        else if (!strncmp(argv[i], "floor=", 6)) floor = atof(argv[i] + 6);
        else usage_ok = false;
    }
    if (!usage_ok) {
        fprintf(stderr, "usage: compare_weights A B TOL [buffers] [floor=F]\n");
        return 2;
    }
    SafetensorsFile *a[MAX_STAGES], *b[MAX_STAGES];
    int na = open_stages(argv[1], a), nb = open_stages(argv[2], b);
    int rc = compare(a, na, b, nb, atof(argv[3]), buffers, floor, argv[0], argv[1]);
    // Freed so that the sanitizer build's leak check passes (the quick suite runs this there too).
    for (int k = 0; k < na; k++) safetensors_file_destroy(a[k]);
    for (int k = 0; k < nb; k++) safetensors_file_destroy(b[k]);
    return rc;
}
