// study_run: the loop over a study's points and their rows in points.csv.
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/core/clock.h"
#include "framework/core/fsutil.h"
#include "framework/core/path.h"
#include "framework/core/plot_script.h"
#include "framework/study/study_calibrate.h"
#include "framework/study/study_internal.h"
#include "framework/study/study_launch.h"
#include "framework/study/study_point.h"
#include "framework/study/study_run.h"

// Seconds a measured point spends outside its timed batches (launch, dataset scan, model build,
// checkpoint), until the study has measured its own.
static const double LAUNCH_OVERHEAD_GUESS_S = 10.0;

// The columns of points.csv (experiments/STUDY.md documents each): index, label, the swept keys,
// then these.
static const char *const fixed_columns[] = {
    "world", "nodes_used", "status", "reason", "run_dir", "predicted_step_ms", "measured_step_ms", "error_pct",
    "measured_spread_pct",
    "predicted_images_per_s", "measured_images_per_s", "images_per_s", "images_per_s_per_gpu", "scaling_efficiency",
    "bubble_fraction", "predicted_peak_activation_bytes", "measured_peak_activation_bytes", "measured_peak_rss_bytes",
    "predicted_memory_bytes", "memory_bytes_per_gpu", "fits_memory", "p2p_bytes_per_step", "allreduce_bytes_per_step",
};
enum { N_FIXED_COLUMNS = sizeof fixed_columns / sizeof *fixed_columns };

typedef struct StudyRun {
    const StudyConfig *s;
    const StudyRunOptions *opt;
    char out[PATH_MAX], csv[PATH_MAX];
    char traces[PATH_MAX];  // where each point's simulated timeline goes ("" in a dry run: nowhere)
    int n_swept;
    char **swept;         // the swept keys: axes, explicit points' keys, "nodes" for a cluster's node list
    StudyTable table;     // what points.csv holds: rows from an earlier run (--resume), then this one's
    StudyPoints points;
    int *order;           // points in run order: by world size, so each group's smallest world comes first
    double expected_s;    // what the whole run is expected to take, and per point
    double *point_expected_s;
} StudyRun;

typedef enum StudyStatus { STATUS_OK, STATUS_FAILED, STATUS_TIMEOUT, STATUS_OOM, STATUS_INVALID } StudyStatus;
static const char *const status_names[] = {"ok", "failed", "timeout", "oom", "invalid"};

// The value point p's settings give `key`, "" when they leave it at the experiment's.
static const char *point_value(const StudyPoint *p, const char *key) {
    const char *v = study_point_value(p, key);
    return v ? v : "";
}

static void add_swept(StudyRun *r, const char *key) {
    for (int i = 0; i < r->n_swept; i++)
        if (!strcmp(r->swept[i], key)) return;
    r->swept = yp_realloc(r->swept, (size_t)(r->n_swept + 1) * sizeof *r->swept);
    r->swept[r->n_swept++] = yp_strdup(key);
}

void study_term_column(StudyTerm t, char *out, size_t cap) { snprintf(out, cap, "term_%s_ms", study_term_names[t]); }

void study_cost_column(const StudyPlatform *pl, bool spot, char *out, size_t cap) {
    if (pl->kind == STUDY_PLATFORM_LOCAL) snprintf(out, cap, "cost_%s", pl->name);
    else snprintf(out, cap, "cost_%s_%s", pl->name, spot ? "spot" : "on_demand");
}

static void columns_build(StudyRun *r, int *n_cols, char ***cols) {
    const StudyConfig *s = r->s;
    for (int a = 0; a < s->n_axes; a++) add_swept(r, s->axes[a].key);
    for (int p = 0; p < s->n_points; p++)
        for (int i = 0; i < s->points[p].n_settings; i++) add_swept(r, s->points[p].settings[i].key);
    if (s->cluster.n_nodes > 0) add_swept(r, "nodes");
    int n = 2 + r->n_swept + N_FIXED_COLUMNS + STUDY_TERM_COUNT + 1 + 2 * s->n_platforms;
    char **c = yp_calloc((size_t)n, sizeof *c);
    int k = 0;
    c[k++] = yp_strdup("index");
    c[k++] = yp_strdup("label");
    for (int i = 0; i < r->n_swept; i++) c[k++] = yp_strdup(r->swept[i]);
    for (int i = 0; i < N_FIXED_COLUMNS; i++) c[k++] = yp_strdup(fixed_columns[i]);
    char name[160];
    for (int t = 0; t < STUDY_TERM_COUNT; t++) {
        study_term_column((StudyTerm)t, name, sizeof name);
        c[k++] = yp_strdup(name);
    }
    c[k++] = yp_strdup("time_to_train_h");
    for (int p = 0; p < s->n_platforms; p++) {
        const StudyPlatform *pl = &s->platforms[p];
        study_cost_column(pl, false, name, sizeof name);
        c[k++] = yp_strdup(name);
        if (pl->kind == STUDY_PLATFORM_CLOUD) {
            study_cost_column(pl, true, name, sizeof name);
            c[k++] = yp_strdup(name);
        }
    }
    *n_cols = k;
    *cols = c;
}

// ---- one row -------------------------------------------------------------------------------------

typedef struct RowCells {
    int n;
    char **cells;
    const StudyTable *t;
} RowCells;

static void cell_set(RowCells *row, const char *col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cell_set(RowCells *row, const char *col, const char *fmt, ...) {
    int c = study_table_col(row->t, col);
    YP_CHECK(c >= 0);
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(row->cells[c]);
    row->cells[c] = yp_strdup(buf);
}

static void cell_number(RowCells *row, const char *col, double v) {
    if (isfinite(v)) cell_set(row, col, "%.6g", v);
}

// The key that groups rows for scaling efficiency: the swept values that do not set the world size
// (those are the scaling axis).
static void group_key(const StudyRun *r, const StudyTable *t, int row, char *out, size_t cap) {
    bool nodes_set_world = r->s->cluster.n_nodes > 0;
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < r->n_swept; i++) {
        const char *k = r->swept[i];
        bool sets_world = !strcmp(k, "nodes") || !strcmp(k, "parallel.replicas") ||
                          (!nodes_set_world && !strcmp(k, "parallel.stages"));
        if (sets_world) continue;
        n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s=%s;", k, study_table_cell(t, row, k));
    }
}

// scaling_efficiency of the table's last row, whose images/s per GPU is per_gpu: over that of the
// first earlier finished row of its group (the smallest world: rows run by world size), 1 without one.
static void row_set_efficiency(StudyRun *r, double per_gpu) {
    StudyTable *t = &r->table;
    int row = t->n_rows - 1;
    if (strcmp(study_table_cell(t, row, "status"), "ok")) return;
    char key[2048], other[2048];
    group_key(r, t, row, key, sizeof key);
    double base = 0;
    for (int i = 0; i < row; i++) {
        if (strcmp(study_table_cell(t, i, "status"), "ok")) continue;
        group_key(r, t, i, other, sizeof other);
        if (!strcmp(other, key) && study_table_number(t, i, "images_per_s_per_gpu", &base)) break;
    }
    char text[32];
    snprintf(text, sizeof text, "%.6g", base > 0 ? per_gpu / base : 1.0);
    study_table_set(t, row, "scaling_efficiency", text);
}

static void row_costs(const StudyRun *r, RowCells *row, const StudyPrediction *pred, double step_s, int64_t world,
                      int64_t epochs) {
    const StudyTrainFor *tf = &r->s->train_for;
    if (!tf->present || tf->images <= 0 || !(step_s > 0)) return;
    double steps_per_epoch = ceil((double)tf->images / (double)pred->images_per_step);
    double hours = (double)epochs * (steps_per_epoch * step_s + tf->val_s_per_epoch) / 3600.0;
    cell_number(row, "time_to_train_h", hours);
    char name[160];
    for (int p = 0; p < r->s->n_platforms; p++) {
        const StudyPlatform *pl = &r->s->platforms[p];
        double gpu_hours = hours * (double)world;
        if (pl->kind == STUDY_PLATFORM_LOCAL) {
            // A GPU's share of the purchase over the hours it is in use, plus its electricity.
            double per_hour = pl->purchase_per_gpu / (pl->years * 365.25 * 24.0 * pl->utilisation) +
                              pl->watts_per_gpu / 1000.0 * pl->electricity_per_kwh;
            study_cost_column(pl, false, name, sizeof name);
            cell_number(row, name, gpu_hours * per_hour);
        } else {
            study_cost_column(pl, false, name, sizeof name);
            cell_number(row, name, gpu_hours * pl->on_demand_per_gpu_hour);
            study_cost_column(pl, true, name, sizeof name);
            if (pl->spot_per_gpu_hour > 0) cell_number(row, name, gpu_hours * pl->spot_per_gpu_hour);
        }
    }
}

typedef struct PointResult {
    StudyStatus status;
    char reason[1280];
    char run_dir[PATH_MAX];
    bool predicted, measured;
    StudyPrediction pred;
    StudyMeasurement meas;
    double slowest_s;     // the slowest take's step (meas has the fastest's)
    int64_t epochs;  // the point's train.epochs, for time to train
} PointResult;

// How much slower the slowest take of a measured point was than the fastest; -1 with one take.
static double takes_spread(const StudyRun *r, const PointResult *res) {
    return r->s->measure.takes > 1 ? res->slowest_s / res->meas.step_s - 1.0 : -1.0;
}

static void row_fill(StudyRun *r, int index, const StudyPoint *p, const PointResult *res, RowCells *row) {
    cell_set(row, "index", "%d", index);
    cell_set(row, "label", "%s", p->label);
    for (int i = 0; i < r->n_swept; i++) {
        if (!strcmp(r->swept[i], "nodes")) cell_set(row, "nodes", "%lld", (long long)p->nodes);
        else cell_set(row, r->swept[i], "%s", point_value(p, r->swept[i]));
    }
    cell_set(row, "world", "%lld", (long long)p->world);
    cell_set(row, "nodes_used", "%lld", (long long)p->nodes);
    cell_set(row, "status", "%s", status_names[res->status]);
    cell_set(row, "reason", "%s", res->reason);
    cell_set(row, "run_dir", "%s", res->run_dir);
    if (res->status != STATUS_OK) return;
    const StudyPrediction *pr = &res->pred;
    const StudyMeasurement *m = &res->meas;
    double images_per_s = res->measured ? m->images_per_s : pr->images_per_s;
    double step_s = res->measured ? m->step_s : pr->step_s;
    if (res->predicted) {
        cell_number(row, "predicted_step_ms", 1e3 * pr->step_s);
        cell_number(row, "predicted_images_per_s", pr->images_per_s);
        cell_number(row, "bubble_fraction", pr->bubble);
        cell_set(row, "predicted_peak_activation_bytes", "%lld", (long long)pr->peak_activation_bytes);
        cell_set(row, "predicted_memory_bytes", "%lld", (long long)pr->memory_bytes);
        if (pr->memory_per_gpu > 0) {
            cell_set(row, "memory_bytes_per_gpu", "%lld", (long long)pr->memory_per_gpu);
            cell_set(row, "fits_memory", "%s", pr->memory_bytes <= pr->memory_per_gpu ? "yes" : "no");
        }
        cell_set(row, "p2p_bytes_per_step", "%lld", (long long)pr->p2p_bytes);
        cell_set(row, "allreduce_bytes_per_step", "%lld", (long long)pr->allreduce_bytes);
        char name[64];
        for (int t = 0; t < STUDY_TERM_COUNT; t++) {
            study_term_column((StudyTerm)t, name, sizeof name);
            cell_number(row, name, 1e3 * pr->terms_s[t]);
        }
    }
    if (res->measured) {
        cell_number(row, "measured_step_ms", 1e3 * m->step_s);
        cell_number(row, "measured_images_per_s", m->images_per_s);
        if (m->peak_activation_bytes >= 0) cell_set(row, "measured_peak_activation_bytes", "%lld", (long long)m->peak_activation_bytes);
        if (m->peak_rss_bytes >= 0) cell_set(row, "measured_peak_rss_bytes", "%lld", (long long)m->peak_rss_bytes);
        if (res->predicted) cell_number(row, "error_pct", 100.0 * (pr->step_s - m->step_s) / m->step_s);
        if (takes_spread(r, res) >= 0) cell_number(row, "measured_spread_pct", 100.0 * takes_spread(r, res));
    }
    cell_number(row, "images_per_s", images_per_s);
    cell_number(row, "images_per_s_per_gpu", images_per_s / (double)p->world);
    row_costs(r, row, pr, step_s, p->world, res->epochs);
}

// ---- running a point -----------------------------------------------------------------------------

// The run's outcome from its log: out of memory, else the last line it printed.
static void classify_failure(const char *log_path, const LaunchResult *lr, PointResult *res) {
    char last[400];
    launch_log_last_line(log_path, last, sizeof last);
    bool oom = strstr(last, "out of memory") || strstr(last, "Out of memory") || (lr->outcome == LAUNCH_SIGNALED && lr->exit_code == 9);
    if (lr->outcome == LAUNCH_TIMED_OUT) {
        res->status = STATUS_TIMEOUT;
        snprintf(res->reason, sizeof res->reason, "killed at the time limit after %.0f s (log: %.300s)", lr->seconds, log_path);
    } else if (oom) {
        res->status = STATUS_OOM;
        snprintf(res->reason, sizeof res->reason, "out of memory: %.300s", last);
    } else {
        res->status = STATUS_FAILED;
        if (lr->outcome == LAUNCH_SIGNALED)
            snprintf(res->reason, sizeof res->reason, "killed by signal %d: %.300s", lr->exit_code, last);
        else snprintf(res->reason, sizeof res->reason, "exit %d: %.300s", lr->exit_code, last);
    }
}

// One run of point p as runs/<name>: its measurement into *meas and its folder into run_dir, or false
// with res's status and reason set.
static bool point_take(StudyRun *r, const StudyPoint *p, const char *name, StudyMeasurement *meas, char *run_dir,
                       PointResult *res, double *wall_s) {
    const StudyConfig *s = r->s;
    char runs[PATH_MAX], log_path[PATH_MAX], json[PATH_MAX];
    Error err = {0};
    if (!path_format(runs, sizeof runs, &err, "%s/runs", r->out) || !fs_mkdir_p(runs, &err) ||
        !path_format(log_path, sizeof log_path, &err, "%s/%s.log", runs, name) ||
        !path_format(run_dir, PATH_MAX, &err, "%s/%s", runs, name) ||
        !path_format(json, sizeof json, &err, "%s/measured.json", run_dir)) {
        res->status = STATUS_FAILED;
        snprintf(res->reason, sizeof res->reason, "%s", err.message);
        return false;
    }
    int n_words;
    char **words;
    YP_CHECK(launch_expand_template(s->measure.launcher, (long)p->world, (long)p->nodes, &n_words, &words, &err));
    // The run executes the layout the study planned (its partition comes from the same costs as the
    // prediction, a calibration profile's when there is one), so the two describe the same pipeline.
    enum { N_EXTRA = 5 };  // max_steps, output.dir, name, output.trace, partition
    char **sets = yp_calloc((size_t)p->n_settings + N_EXTRA, sizeof *sets);
    int n_sets = 0;
    for (int i = 0; i < p->n_settings; i++) sets[n_sets++] = study_setting_arg(&p->settings[i]);
    sets[n_sets++] = study_printf("train.max_steps=%lld", (long long)(s->measure.warmup + s->measure.steps));
    sets[n_sets++] = study_printf("output.dir=%s", runs);
    sets[n_sets++] = study_printf("name=%s", name);
    sets[n_sets++] = study_printf("output.trace=true");
    if (!*point_value(p, "parallel.partition") && res->pred.partition[0])
        sets[n_sets++] = study_printf("parallel.partition=%s", res->pred.partition);
    char **argv = yp_calloc((size_t)(n_words + 3 + 2 * n_sets) + 1, sizeof *argv);
    int a = 0;
    for (int i = 0; i < n_words; i++) argv[a++] = words[i];
    argv[a++] = (char *)r->opt->self_exe;
    argv[a++] = "train";
    argv[a++] = s->experiment;
    for (int i = 0; i < n_sets; i++) {
        argv[a++] = "--set";
        argv[a++] = sets[i];
    }
    LaunchResult lr = {0};
    bool ok = false;
    remove(json);  // a stale record from an earlier, killed study must not pass for this run's
    if (!launch_run(argv, log_path, s->measure.time_limit_s, &lr, &err)) {
        res->status = STATUS_FAILED;
        snprintf(res->reason, sizeof res->reason, "%s", err.message);
    } else if (lr.outcome != LAUNCH_EXITED || lr.exit_code != 0) {
        classify_failure(log_path, &lr, res);
    } else if (!study_point_read_measured(json, s->measure.warmup, meas, &err)) {
        res->status = STATUS_FAILED;
        snprintf(res->reason, sizeof res->reason, "%s", err.message);
    } else {
        ok = true;
    }
    *wall_s += lr.seconds;
    for (int i = 0; i < n_sets; i++) free(sets[i]);
    free(sets);
    free(argv);
    launch_words_free(n_words, words);
    return ok;
}

// Take `take` (from 0) of point p, merged into res: the fastest take is the measurement, and the
// slowest says how noisy the machine was. A resumed study reads a take that finished before (its
// measured.json is written whole at the run's end) instead of running it again. A take that fails
// fails the point. *take_s gets this take's step.
static void point_measure_take(StudyRun *r, int index, const StudyPoint *p, int take, PointResult *res,
                               double *take_s, double *wall_s) {
    char name[64], run_dir[PATH_MAX], json[PATH_MAX];
    if (take == 0) snprintf(name, sizeof name, "point-%d", index);
    else snprintf(name, sizeof name, "point-%d-take-%d", index, take + 1);
    StudyMeasurement meas;
    Error ignored;
    bool earlier = r->opt->resume && path_format(run_dir, sizeof run_dir, &ignored, "%s/runs/%s", r->out, name) &&
                   path_format(json, sizeof json, &ignored, "%s/measured.json", run_dir) &&
                   study_point_read_measured(json, r->s->measure.warmup, &meas, &ignored);
    if (!earlier && !point_take(r, p, name, &meas, run_dir, res, wall_s)) {
        res->measured = false;
        return;
    }
    if (!res->measured || meas.step_s < res->meas.step_s) {
        res->meas = meas;
        snprintf(res->run_dir, sizeof res->run_dir, "%s", run_dir);
    }
    if (meas.step_s > res->slowest_s) res->slowest_s = meas.step_s;
    res->measured = true;
    *take_s = meas.step_s;
}

// ---- --resume: what a study's results depend on, written when it begins ----------------------------

// What the points' results depend on (study_config_write_fingerprint), with the bytes of the base
// experiment file, written when a study begins; --resume compares it line by line with the study now.
static void fingerprint_write(const StudyConfig *s, FILE *f) {
    char *text;
    size_t n;
    uint64_t hash = 1469598103934665603ull;  // FNV-1a of the experiment file
    Error ignored;  // an unreadable experiment fails later, where it is loaded
    if (fs_read_file(s->experiment, FS_READ_YAML, &text, &n, &ignored)) {
        for (size_t i = 0; i < n; i++) hash = (hash ^ (unsigned char)text[i]) * 1099511628211ull;
        free(text);
    }
    fprintf(f, "experiment.content: %016llx\n", (unsigned long long)hash);
    study_config_write_fingerprint(s, f);
}

// The first line where the saved fingerprint and the current one differ, as a message.
static bool fingerprint_check(const StudyConfig *s, const char *path, Error *err) {
    char *saved;
    size_t n_saved;
    Error why;
    if (!fs_read_file(path, FS_READ_TEXT, &saved, &n_saved, &why))
        return error_set(err, "--resume: %s: is this a study's output folder?", why.message);
    char *now = NULL;
    size_t n_now = 0;
    FILE *f = open_memstream(&now, &n_now);
    fingerprint_write(s, f);
    fclose(f);
    bool ok = true;
    for (const char *a = saved, *b = now; ok && (*a || *b);) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || strncmp(a, b, la)) {
            size_t key = strcspn(*a ? a : b, ":");
            ok = error_set(err, "--resume: the study changed since %s was begun: %.*s was '%.*s', now '%.*s' (use another --out)",
                           path, (int)key, *a ? a : b, la > key + 2 ? (int)(la - key - 2) : 0, a + (la > key + 2 ? key + 2 : la),
                           lb > key + 2 ? (int)(lb - key - 2) : 0, b + (lb > key + 2 ? key + 2 : lb));
        }
        a += la + (a[la] == '\n');
        b += lb + (b[lb] == '\n');
    }
    free(saved);
    free(now);
    return ok;
}

// ---- the study -------------------------------------------------------------------------------------

static void format_duration(double s, char *out, size_t cap) {
    if (s < 90) snprintf(out, cap, "%.0f s", s);
    else if (s < 5400) snprintf(out, cap, "%.0f min", s / 60);
    else snprintf(out, cap, "%.1f h", s / 3600);
}

static bool row_done(const StudyTable *t, const char *label) {
    for (int i = 0; i < t->n_rows; i++)
        if (!strcmp(study_table_cell(t, i, "label"), label)) return true;
    return false;
}

static int compare_world(const void *a, const void *b, void *points) {
    const StudyPoint *p = points;
    int x = *(const int *)a, y = *(const int *)b;
    if (p[x].world != p[y].world) return p[x].world < p[y].world ? -1 : 1;
    return (x > y) - (x < y);
}

// Opens the output folder: a fresh one (refusing one that holds another study's points.csv), or
// with --resume the one begun before, checked against this study.
static bool output_open(StudyRun *r, int n_cols, char **cols, Error *err) {
    char fingerprint[PATH_MAX];
    if (!path_format(r->csv, sizeof r->csv, err, "%s/points.csv", r->out) ||
        !path_format(fingerprint, sizeof fingerprint, err, "%s/study.fingerprint", r->out))
        return false;
    bool exists;
    if (!study_table_read(r->csv, &r->table, &exists, err)) return false;
    if (exists && !r->opt->resume)
        return error_set(err, "%s exists from an earlier run of a study: pass --resume to finish it, or choose another --out",
                         r->csv);
    if (exists) {
        bool same = r->table.n_cols == n_cols;
        for (int c = 0; same && c < n_cols; c++) same = !strcmp(r->table.cols[c], cols[c]);
        if (!fingerprint_check(r->s, fingerprint, err)) return false;
        if (!same) return error_set(err, "--resume: %s has other columns than this study writes (use another --out)", r->csv);
        return true;
    }
    // Killed before its first row: the takes it finished are reused only by the same study.
    if (r->opt->resume && access(fingerprint, R_OK) == 0 && !fingerprint_check(r->s, fingerprint, err)) return false;
    study_table_clear(&r->table);
    study_table_init(&r->table, n_cols, cols);
    if (r->opt->resume) fprintf(r->opt->log, "--resume: %s has no points yet; starting the study\n", r->csv);
    if (!fs_mkdir_p(r->out, err)) return false;
    FsAtomicFile *af;
    if (!fs_atomic_file_open(fingerprint, &af, err)) return false;
    fingerprint_write(r->s, fs_atomic_file_stream(af));
    return fs_atomic_file_commit(af, err);
}

// Plans every point (fast) so that the study can say how long measuring will take.
static void predict_all(StudyRun *r, char *const *profiles, const StudySharing *calibrated, PointResult *results) {
    const StudyMeasure *m = &r->s->measure;
    r->point_expected_s = yp_calloc((size_t)r->points.n, sizeof *r->point_expected_s);
    for (int i = 0; i < r->points.n; i++) {
        Error err = {0};
        PointResult *res = &results[i];
        *res = (PointResult){.status = STATUS_OK};
        char trace[PATH_MAX];
        bool traced = r->traces[0] && path_format(trace, sizeof trace, &err, "%s/point-%d.json", r->traces, i);
        StudyCosts costs = {.profile = profiles ? profiles[i] : NULL, .cores_per_node = calibrated->cores_per_node,
                            .wait_cost = calibrated->wait_cost,
                            .trace = traced ? trace : NULL};
        if (!study_point_simulate(r->s, &r->points.points[i], &costs, &res->pred, &err)) {
            res->status = err.code == ERROR_CODE_NO_FIT ? STATUS_OOM : STATUS_INVALID;
            snprintf(res->reason, sizeof res->reason, "%s", err.message);
        }
        if (r->s->mode != STUDY_MODE_SIMULATE && res->status == STATUS_OK)
            r->point_expected_s[i] =
                (double)m->takes * (LAUNCH_OVERHEAD_GUESS_S + (double)(m->warmup + m->steps + 1) * res->pred.step_s);
        r->expected_s += r->point_expected_s[i];
    }
}

// What scripts/run.sh does for mpirun, done for a launcher that is mpirun: as root Open MPI wants
// its consent, and containers forbid its cross-memory attach. A value the user set is kept.
static void mpirun_environment(const StudyConfig *s, FILE *log) {
    size_t n = strcspn(s->measure.launcher, " \t");
    const char *base = s->measure.launcher;
    for (const char *c = base; c < s->measure.launcher + n; c++)
        if (*c == '/') base = c + 1;
    if (strncmp(base, "mpirun", 6) || base + 6 != s->measure.launcher + n) return;
    if (geteuid() == 0 && !getenv("OMPI_ALLOW_RUN_AS_ROOT")) {
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        fprintf(log, "running as root: OMPI_ALLOW_RUN_AS_ROOT=1 for mpirun\n");
    }
    if (!getenv("OMPI_MCA_btl_vader_single_copy_mechanism")) setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
}

static void print_expected(const StudyRun *r, FILE *log) {
    if (r->s->mode == STUDY_MODE_SIMULATE) return;
    char expected[32];
    format_duration(r->expected_s, expected, sizeof expected);
    fprintf(log, "expected time: about %s (measuring %lld + %lld warm-up steps a point", expected,
            (long long)r->s->measure.steps, (long long)r->s->measure.warmup);
    if (r->s->measure.takes > 1) fprintf(log, ", %lld takes", (long long)r->s->measure.takes);
    fputs(")\n", log);
}

static bool run_plots(StudyRun *r) {
    char log_path[PATH_MAX], notice[PATH_MAX + 128];
    Error err = {0};
    FILE *log = r->opt->log;
    PlotScript ps;
    if (!path_format(log_path, sizeof log_path, &err, "%s/plots.log", r->out) ||
        !plot_script_find(r->opt->self_exe, log_path, &ps, notice, sizeof notice)) {
        fprintf(log, "figures: %s; then run\n  /usr/bin/python3 experiments/yolopipe_plot.py study %s\n",
                err.message[0] ? err.message : notice, r->csv);
        return false;
    }
    const char *args[] = {"study", r->csv, "--title", r->s->name, NULL};
    if (plot_script_start(&ps, args, &err) && plot_script_wait(&ps, 300)) {
        char *text;
        size_t n;
        Error ignored;  // the figures are made; a log that cannot be copied loses nothing
        if (fs_read_file(log_path, FS_READ_TEXT, &text, &n, &ignored)) {
            fputs(text, log);
            free(text);
        }
        return true;
    }
    fprintf(log, "figures: %s %s study failed (see %s)\n", ps.python, ps.script, log_path);
    return false;
}

static void progress_line(StudyRun *r, int k, const StudyPoint *p, const PointResult *res, double wall_s,
                          double eta_s, bool resumed) {
    FILE *log = r->opt->log;
    fprintf(log, "[%d/%d] %s: ", k + 1, r->points.n, p->label);
    if (resumed) fprintf(log, "done earlier (in points.csv)");
    else if (res->status != STATUS_OK) fprintf(log, "%s: %s", status_names[res->status], res->reason);
    else {
        if (res->predicted) fprintf(log, "predicted %.1f ms", 1e3 * res->pred.step_s);
        if (res->measured) {
            fprintf(log, "%smeasured %.1f ms", res->predicted ? ", " : "", 1e3 * res->meas.step_s);
            if (res->predicted)
                fprintf(log, " (%+.1f %%)", 100.0 * (res->pred.step_s - res->meas.step_s) / res->meas.step_s);
            if (takes_spread(r, res) >= 0)
                fprintf(log, ", the fastest of %lld takes (the slowest %+.1f %%)", (long long)r->s->measure.takes,
                        100.0 * takes_spread(r, res));
        }
        fprintf(log, ", %.1f images/s", res->measured ? res->meas.images_per_s : res->pred.images_per_s);
        if (wall_s > 0) fprintf(log, " [%.0f s]", wall_s);
    }
    if (eta_s > 0) {
        char eta[32];
        format_duration(eta_s, eta, sizeof eta);
        fprintf(log, "; ETA %s", eta);
    }
    fputc('\n', log);
    fflush(log);
}

// A take before the last round: what it measured (take_s), or why the point failed.
static void take_line(StudyRun *r, int k, const StudyPoint *p, int round, const PointResult *res, double take_s,
                      double wall_s, double eta_s) {
    FILE *log = r->opt->log;
    char eta[32];
    format_duration(eta_s, eta, sizeof eta);
    fprintf(log, "[%d/%d] %s: take %d: ", k + 1, r->points.n, p->label, round + 1);
    if (res->status != STATUS_OK) fprintf(log, "%s: %s", status_names[res->status], res->reason);
    else fprintf(log, "measured %.1f ms [%.0f s]", 1e3 * take_s, wall_s);
    fprintf(log, "; ETA %s\n", eta);
    fflush(log);
}

// Appends point i's row to the table and to points.csv.
static bool row_write(StudyRun *r, int i, const StudyPoint *p, const PointResult *res, int n_cols, Error *err) {
    RowCells row = {.n = n_cols, .cells = yp_calloc((size_t)n_cols, sizeof(char *)), .t = &r->table};
    for (int c = 0; c < n_cols; c++) row.cells[c] = yp_strdup("");
    row_fill(r, i, p, res, &row);
    study_table_add(&r->table, row.cells);
    row_set_efficiency(r, (res->measured ? res->meas.images_per_s : res->pred.images_per_s) / (double)p->world);
    for (int c = 0; c < n_cols; c++) free(row.cells[c]);
    free(row.cells);
    return study_table_append_file(&r->table, r->table.n_rows - 1, r->csv, err);
}

static void study_run_free(StudyRun *r) {
    study_table_clear(&r->table);
    study_points_clear(&r->points);
    for (int i = 0; i < r->n_swept; i++) free(r->swept[i]);
    free(r->swept);
    free(r->order);
    free(r->point_expected_s);
}

bool study_run(const StudyConfig *s, const StudyRunOptions *opt, Error *err) {
    StudyRun r = {.s = s, .opt = opt};
    FILE *log = opt->log;
    if (!path_format(r.out, sizeof r.out, err, "%s", opt->out ? opt->out : s->out) ||
        !study_points_expand(s, &r.points, err)) {
        study_run_free(&r);
        return false;
    }
    fprintf(log, "study %s: %d point%s (%s)", s->name, r.points.n, r.points.n == 1 ? "" : "s", study_mode_names[s->mode]);
    if (r.points.n_dropped) fprintf(log, ", %d combination%s dropped:", r.points.n_dropped, r.points.n_dropped == 1 ? "" : "s");
    fputc('\n', log);
    for (int i = 0; i < r.points.n_dropped; i++) fprintf(log, "  dropped %s\n", r.points.dropped[i]);
    r.order = yp_malloc((size_t)r.points.n * sizeof *r.order);
    for (int i = 0; i < r.points.n; i++) r.order[i] = i;
    qsort_r(r.order, (size_t)r.points.n, sizeof *r.order, compare_world, r.points.points);

    PointResult *predicted = yp_calloc((size_t)r.points.n + 1, sizeof *predicted);
    if (opt->dry_run) {
        predict_all(&r, NULL, &(StudySharing){.wait_cost = -1}, predicted);
        print_expected(&r, log);
        if (s->cluster.calibrate) fprintf(log, "(planned with the FLOP estimate: the calibration profiles run only in the study)\n");
        for (int k = 0; k < r.points.n; k++) {
            const StudyPoint *p = &r.points.points[r.order[k]];
            const PointResult *pr = &predicted[r.order[k]];
            fprintf(log, "  %s (world %lld)", p->label, (long long)p->world);
            if (pr->status == STATUS_OK) fprintf(log, ": predicted %.1f ms\n", 1e3 * pr->pred.step_s);
            else fprintf(log, ": invalid: %s\n", pr->reason);
        }
        free(predicted);
        study_run_free(&r);
        return true;
    }

    int n_cols;
    char **cols;
    columns_build(&r, &n_cols, &cols);
    bool ok = output_open(&r, n_cols, cols, err) && path_format(r.traces, sizeof r.traces, err, "%s/predicted", r.out) &&
              fs_mkdir_p(r.traces, err);
    // Profiles and measured ranks get the threads the simulation gives a rank.
    char threads[24];
    snprintf(threads, sizeof threads, "%lld", (long long)s->cluster.threads_per_rank);
    if (ok && s->cluster.threads_per_rank > 0 && (s->mode != STUDY_MODE_SIMULATE || s->cluster.calibrate)) {
        if (getenv("OMP_NUM_THREADS")) fprintf(log, "OMP_NUM_THREADS=%s is set: ranks run with it, not cluster.threads_per_rank\n", getenv("OMP_NUM_THREADS"));
        else setenv("OMP_NUM_THREADS", threads, 1);
    }
    if (ok && s->mode != STUDY_MODE_SIMULATE) mpirun_environment(s, log);
    char **profiles = NULL;
    StudySharing calibrated = {.wait_cost = -1};
    if (ok && s->cluster.calibrate) ok = study_calibrate(s, &r.points, r.out, opt->self_exe, log, &profiles, &calibrated, err);
    if (ok) predict_all(&r, profiles, &calibrated, predicted);
    study_calibrate_free(r.points.n, profiles);
    if (ok) print_expected(&r, log);
    // measure.takes rounds over the points, so that a noisy spell slows one take of a point, not all:
    // each round runs one take of every point; the last writes the rows.
    int rounds = s->mode == STUDY_MODE_SIMULATE ? 1 : (int)s->measure.takes;
    double done_expected = 0, done_actual = 0, remaining = r.expected_s;
    for (int round = 0; ok && round < rounds; round++) {
        bool last = round == rounds - 1;
        if (rounds > 1) fprintf(log, "round %d of %d: take %d of every point\n", round + 1, rounds, round + 1);
        for (int k = 0; ok && k < r.points.n; k++) {
            int i = r.order[k];
            const StudyPoint *p = &r.points.points[i];
            PointResult *res = &predicted[i];
            double expected = r.point_expected_s[i] / rounds;
            remaining -= expected;
            if (row_done(&r.table, p->label)) {
                if (last) progress_line(&r, k, p, NULL, 0, 0, true);
                continue;
            }
            if (round == 0) {
                res->epochs = s->train_for.epochs > 0 ? s->train_for.epochs : res->pred.train_epochs;
                res->predicted = s->mode != STUDY_MODE_MEASURE;
            }
            double take_s = 0, wall_s = 0, start = clock_monotonic_s();
            // Every point is planned first: measuring needs a layout the planner accepts.
            if (res->status == STATUS_OK && s->mode != STUDY_MODE_SIMULATE)
                point_measure_take(&r, i, p, round, res, &take_s, &wall_s);
            done_actual += clock_monotonic_s() - start;
            done_expected += expected;
            double eta = done_expected > 0 ? remaining * done_actual / done_expected : remaining;
            if (!last) {
                take_line(&r, k, p, round, res, take_s, wall_s, eta);
                continue;
            }
            ok = row_write(&r, i, p, res, n_cols, err);
            progress_line(&r, k, p, res, wall_s, s->mode == STUDY_MODE_SIMULATE ? 0 : eta, false);
        }
    }
    for (int c = 0; c < n_cols; c++) free(cols[c]);
    free(cols);
    free(predicted);
    if (ok) {
        char summary[PATH_MAX];
        ok = path_format(summary, sizeof summary, err, "%s/summary.md", r.out) &&
             study_report_write(s, &r.table, summary, err);
        if (ok) {
            study_report_print_best(&r.table, log);
            fprintf(log, "results in %s: points.csv, summary.md\n", r.out);
            run_plots(&r);
        }
    }
    study_run_free(&r);
    return ok;
}
