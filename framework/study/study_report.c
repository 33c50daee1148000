// summary.md, drawn from the points table alone (so a resumed study reports every point alike).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/fsutil.h"
#include "framework/core/sort.h"
#include "framework/study/study_point.h"
#include "framework/study/study_run.h"

static bool row_ok(const StudyTable *t, int r) { return !strcmp(study_table_cell(t, r, "status"), "ok"); }

static double number_or(const StudyTable *t, int r, const char *col, double fallback) {
    double v;
    return study_table_number(t, r, col, &v) ? v : fallback;
}

// The distinct world sizes of the ok rows, ascending.
static int world_sizes(const StudyTable *t, double *out) {
    int n = 0;
    for (int r = 0; r < t->n_rows; r++) {
        double w;
        if (!row_ok(t, r) || !study_table_number(t, r, "world", &w)) continue;
        bool seen = false;
        for (int i = 0; i < n; i++) seen |= out[i] == w;
        if (!seen) out[n++] = w;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            double x = out[j];
            out[j] = out[j - 1];
            out[j - 1] = x;
        }
    return n;
}

// The ok row of world size w with the largest (sign +1) or smallest (-1) value of col, optionally only
// among rows that fit in memory; -1 when none.
static int best_row(const StudyTable *t, double w, const char *col, int sign, bool must_fit) {
    int best = -1;
    double best_v = 0;
    for (int r = 0; r < t->n_rows; r++) {
        double rw, v;
        if (!row_ok(t, r) || !study_table_number(t, r, "world", &rw) || rw != w) continue;
        if (!study_table_number(t, r, col, &v)) continue;
        if (must_fit && strcmp(study_table_cell(t, r, "fits_memory"), "yes")) continue;
        if (best < 0 || sign * v > sign * best_v) best = r, best_v = v;
    }
    return best;
}

static void write_best_table(const StudyConfig *s, const StudyTable *t, FILE *f) {
    double *worlds = yp_malloc((size_t)(t->n_rows + 1) * sizeof *worlds);
    int n = world_sizes(t, worlds);
    bool memory_known = study_table_col(t, "fits_memory") >= 0;
    fprintf(f, "## Best layout per GPU count\n\n| GPUs | fastest | images/s | fastest that fits in memory |");
    for (int p = 0; p < s->n_platforms; p++) fprintf(f, " cheapest on %s |", s->platforms[p].name);
    fprintf(f, "\n|---:|---|---:|---|");
    for (int p = 0; p < s->n_platforms; p++) fprintf(f, "---|");
    fputc('\n', f);
    for (int i = 0; i < n; i++) {
        int fast = best_row(t, worlds[i], "images_per_s", +1, false);
        int fit = memory_known ? best_row(t, worlds[i], "images_per_s", +1, true) : -1;
        if (fast < 0) continue;
        fprintf(f, "| %.0f | %s | %.1f | %s |", worlds[i], study_table_cell(t, fast, "label"),
                number_or(t, fast, "images_per_s", NAN), fit >= 0 ? study_table_cell(t, fit, "label") : "none known");
        for (int p = 0; p < s->n_platforms; p++) {
            char col[160];
            study_cost_column(&s->platforms[p], false, col, sizeof col);
            int cheap = best_row(t, worlds[i], col, -1, false);
            if (cheap < 0) fprintf(f, " – |");
            else fprintf(f, " %s: %.0f in %.1f h |", study_table_cell(t, cheap, "label"), number_or(t, cheap, col, NAN),
                         number_or(t, cheap, "time_to_train_h", NAN));
        }
        fputc('\n', f);
    }
    fputc('\n', f);
    free(worlds);
}

// Median and largest of a column's numbers (their magnitudes) over the rows that ran whose `key`
// column equals `value` (every row when key is NULL); false when no row has a number there.
static bool column_stats(const StudyTable *t, const char *column, const char *key, const char *value, double *median,
                         double *max, int *n) {
    double *v = yp_malloc((size_t)(t->n_rows + 1) * sizeof *v);
    *n = 0;
    *max = 0;
    for (int r = 0; r < t->n_rows; r++) {
        double x;
        if (!row_ok(t, r) || !study_table_number(t, r, column, &x)) continue;
        if (key && strcmp(study_table_cell(t, r, key), value)) continue;
        v[(*n)++] = fabs(x);
        if (fabs(x) > *max) *max = fabs(x);
    }
    if (*n) *median = sort_median(v, *n);
    free(v);
    return *n > 0;
}

static void write_error_table(const StudyConfig *s, const StudyTable *t, FILE *f) {
    double median, max;
    int n;
    if (!column_stats(t, "error_pct", NULL, NULL, &median, &max, &n)) return;
    fprintf(f, "## Predicted against measured\n\nerror = (predicted − measured) / measured of the step time.\n\n");
    fprintf(f, "| points | median abs(error) | max abs(error) |\n|---|---:|---:|\n| all (%d) | %.1f %% | %.1f %% |\n", n,
            median, max);
    // One line per value of the first swept key (the schedule in the shipped studies).
    const char *key = s->n_axes ? s->axes[0].key : NULL;
    for (int a = 0; key && a < s->axes[0].n_values; a++) {
        const char *v = s->axes[0].values[a].value;
        if (column_stats(t, "error_pct", key, v, &median, &max, &n))
            fprintf(f, "| %s=%s (%d) | %.1f %% | %.1f %% |\n", key, v, n, median, max);
    }
    fputc('\n', f);
}

// How much a point's takes differed (measure.takes > 1): the machine's noise.
static void write_noise(const StudyConfig *s, const StudyTable *t, FILE *f) {
    double median, max;
    int n;
    if (column_stats(t, "measured_spread_pct", NULL, NULL, &median, &max, &n))
        fprintf(f, "Noise: the slowest of a point's %lld takes was %.1f %% (median over %d points) and at most %.1f %% "
                   "slower than the fastest, the one kept.\n\n", (long long)s->measure.takes, median, n, max);
}

static void write_terms(const StudyTable *t, FILE *f) {
    double share[STUDY_TERM_COUNT] = {0};
    int n = 0;
    for (int r = 0; r < t->n_rows; r++) {
        double step;
        if (!row_ok(t, r) || !study_table_number(t, r, "predicted_step_ms", &step) || !(step > 0)) continue;
        n++;
        for (int k = 0; k < STUDY_TERM_COUNT; k++) {
            char col[64];
            study_term_column((StudyTerm)k, col, sizeof col);
            share[k] += number_or(t, r, col, 0) / step;
        }
    }
    if (!n) return;
    fprintf(f, "## What each modelled term contributes\n\nMean share of the predicted step over %d points "
               "(term_*_ms in points.csv):\n\n| term | share of the step |\n|---|---:|\n", n);
    for (int k = 0; k < STUDY_TERM_COUNT; k++) fprintf(f, "| %s | %.1f %% |\n", study_term_names[k], 100 * share[k] / n);
    fputc('\n', f);
}

static void write_failures(const StudyTable *t, FILE *f) {
    int n = 0;
    for (int r = 0; r < t->n_rows; r++) n += !row_ok(t, r);
    if (!n) return;
    fprintf(f, "## Points that did not run (%d)\n\n| point | status | reason |\n|---|---|---|\n", n);
    for (int r = 0; r < t->n_rows; r++)
        if (!row_ok(t, r))
            fprintf(f, "| %s | %s | %s |\n", study_table_cell(t, r, "label"), study_table_cell(t, r, "status"),
                    study_table_cell(t, r, "reason"));
    fputc('\n', f);
}

bool study_report_write(const StudyConfig *s, const StudyTable *t, const char *path, Error *err) {
    FsAtomicFile *af;
    if (!fs_atomic_file_open(path, &af, err)) return false;
    FILE *f = fs_atomic_file_stream(af);
    int ok_rows = 0;
    for (int r = 0; r < t->n_rows; r++) ok_rows += row_ok(t, r);
    fprintf(f, "# Study %s\n\n%s, mode %s, experiment %s: %d points, %d ran.\n\n", s->name, s->path,
            study_mode_names[s->mode], s->experiment, t->n_rows, ok_rows);
    write_best_table(s, t, f);
    write_error_table(s, t, f);
    write_noise(s, t, f);
    write_terms(t, f);
    write_failures(t, f);
    return fs_atomic_file_commit(af, err);
}

void study_report_print_best(const StudyTable *t, FILE *f) {
    int best = -1;
    double best_v = 0;
    for (int r = 0; r < t->n_rows; r++) {
        double v;
        if (row_ok(t, r) && study_table_number(t, r, "images_per_s", &v) && (best < 0 || v > best_v)) best = r, best_v = v;
    }
    if (best < 0) {
        fprintf(f, "no point ran\n");
        return;
    }
    fprintf(f, "fastest: %s, %.1f images/s on %s GPUs", study_table_cell(t, best, "label"), best_v,
            study_table_cell(t, best, "world"));
    double hours;
    if (study_table_number(t, best, "time_to_train_h", &hours)) fprintf(f, ", %.1f h to train", hours);
    fputc('\n', f);
    double median, max;
    int n;
    if (column_stats(t, "error_pct", NULL, NULL, &median, &max, &n))
        fprintf(f, "prediction error over %d measured points: median %.1f %%, max %.1f %%\n", n, median, max);
}
