// cluster.calibrate: the per-layer and step costs the simulator plans with, measured on this machine
// before the points run by `yolopipe profile` and by one-rank training runs, for each distinct
// (model, scale, data, input size, micro-batch, precision) among them, with the threads each rank
// will have; then how ranks sharing the cores slow each other (study_calibrate.h).
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "framework/config/config.h"
#include "framework/core/fsutil.h"
#include "framework/core/path.h"
#include "framework/core/poll_sleep.h"
#include "framework/study/study_calibrate.h"
#include "framework/study/study_internal.h"
#include "framework/study/study_launch.h"
#include "framework/study/study_point.h"
#include "partition/cost.h"

// What a profile depends on, as text: two points with the same key share a profile.
static bool profile_key(const StudyConfig *s, const StudyPoint *p, char *key, size_t cap, Error *err) {
    ExperimentConfig *cfg = NULL;
    bool ok = study_point_config_load(s, p, &cfg, err);
    if (ok) {
        const ParallelConfig *pc = &cfg->parallel;
        int64_t micro = cfg->train.batch / (pc->replicas * pc->micro_batches);
        snprintf(key, cap, "%s|%s|%s|%lld|%lld|%s", cfg->model, cfg->scale ? cfg->scale : "", cfg->data,
                 (long long)cfg->train.imgsz, (long long)micro, config_precision_names[cfg->device.precision]);
    }
    config_destroy(cfg);
    return ok;
}

// `self_exe COMMAND EXP --set <point's settings>...` with room for n_more words after them, which
// go from *used on; free with argv_free.
static char **point_argv(const char *self_exe, const char *command, const StudyConfig *s, const StudyPoint *p,
                         size_t n_more, int *used) {
    char **argv = yp_calloc(3 + 2 * (size_t)p->n_settings + n_more + 1, sizeof *argv);
    int a = 0;
    argv[a++] = yp_strdup(self_exe);
    argv[a++] = yp_strdup(command);
    argv[a++] = yp_strdup(s->experiment);
    for (int k = 0; k < p->n_settings; k++) {
        argv[a++] = yp_strdup("--set");
        argv[a++] = study_setting_arg(&p->settings[k]);
    }
    *used = a;
    return argv;
}

// `self_exe profile EXP --set <point's settings>... --out path --repeats N`; free with argv_free.
static char **profile_argv(const StudyConfig *s, const StudyPoint *p, const char *self_exe, const char *path,
                           const char *repeats) {
    int a;
    char **argv = point_argv(self_exe, "profile", s, p, 4, &a);
    argv[a++] = yp_strdup("--out");
    argv[a++] = yp_strdup(path);
    argv[a++] = yp_strdup("--repeats");
    argv[a++] = yp_strdup(repeats);
    return argv;
}

static void argv_free(char **argv) {
    for (char **a = argv; *a; a++) free(*a);
    free(argv);
}

// Waits for a profile run; a failure is an error naming the point and the log.
static bool profile_finish(const LaunchJob *job, const StudyConfig *s, const StudyPoint *p, const char *log_path,
                           LaunchResult *lr, Error *err) {
    if (!launch_wait(job, s->measure.time_limit_s, lr, err)) return false;
    if (lr->outcome == LAUNCH_EXITED && lr->exit_code == 0) return true;
    char last[400];
    launch_log_last_line(log_path, last, sizeof last);
    return error_set(err, "calibration: yolopipe profile failed for %s: %s (log: %s)", p->label, last, log_path);
}

// The layers' forward + backward seconds of a profile CSV.
static bool profile_total_s(const char *path, double *total, Error *err) {
    CostProfile *prof = NULL;
    if (!cost_profile_load(path, &prof, err)) return false;
    *total = 0;
    for (int i = 0; i < prof->n_layers; i++) *total += prof->rows[i].fwd_s + prof->rows[i].bwd_s;
    cost_profile_destroy(prof);
    return true;
}

// A process that waits as a rank does, until poller_stop; it dies with the study.
static pid_t poller_start(void) {
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        poll_sleep_forever();
    }
    return pid;
}

static void poller_stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

// C copies of point p's profile at once, beside `pollers` waiting processes, into <dir>/<name>-K.csv
// (taken before by a resumed study: read again); *mean_s gets their mean layer time.
static bool profiles_at_once(const StudyConfig *s, const StudyPoint *p, const char *dir, const char *name, int c,
                             int pollers, const char *self_exe, FILE *log, double *mean_s, Error *err) {
    char path[PATH_MAX], log_path[PATH_MAX];
    LaunchJob *jobs = yp_calloc((size_t)c, sizeof *jobs);
    pid_t *waiting = yp_calloc((size_t)pollers + 1, sizeof *waiting);
    bool ok = true, measured_before = true;
    int started = 0;
    for (int k = 0; measured_before && k < c; k++)
        measured_before = path_format(path, sizeof path, err, "%s/%s-%d.csv", dir, name, k) && access(path, R_OK) == 0;
    if (!measured_before) {
        fprintf(log, "calibration: %d profiles at once%s ...\n", c, pollers ? ", beside ranks that wait" : "");
        fflush(log);
        for (int k = 0; k < pollers; k++) waiting[k] = poller_start();
    }
    for (; ok && !measured_before && started < c; started++) {
        ok = path_format(path, sizeof path, err, "%s/%s-%d.csv", dir, name, started) &&
             path_format(log_path, sizeof log_path, err, "%s/%s-%d.log", dir, name, started);
        if (!ok) break;
        char **argv = profile_argv(s, p, self_exe, path, "15");
        ok = launch_start(argv, log_path, &jobs[started], err);
        argv_free(argv);
        if (!ok) break;
    }
    *mean_s = 0;
    for (int k = 0; k < (measured_before ? c : started); k++) {
        LaunchResult lr;
        Error job_err = {0};
        bool job_ok = measured_before || (path_format(log_path, sizeof log_path, &job_err, "%s/%s-%d.log", dir, name, k) &&
                                          profile_finish(&jobs[k], s, p, log_path, &lr, &job_err));
        double t = 0;
        job_ok = job_ok && path_format(path, sizeof path, &job_err, "%s/%s-%d.csv", dir, name, k) &&
                 profile_total_s(path, &t, &job_err);
        if (ok && !job_ok) ok = error_set(err, "%s", job_err.message);
        *mean_s += t / c;
    }
    for (int k = 0; k < pollers; k++) poller_stop(waiting[k]);
    free(waiting);
    free(jobs);
    return ok;
}

enum { CALIBRATION_TAKES = 2 };  // of every calibration measurement, one round after the other

// C copies of point p's profile at once against the one alone (solo_path): the cores' worth; then
// beside C waiting processes: what a waiting rank takes from a busy core. Both twice, in turn (a
// single take's noise went into every point): of the copies at once the faster take is kept, as for
// the profiles; of the slowdown beside waiting processes the mean, since where their wakes land (one
// core or both) varies from take to take, and the faster take would keep the lucky one.
static bool measure_sharing(const StudyConfig *s, const StudyPoint *p, const char *dir, const char *solo_path,
                            const char *self_exe, FILE *log, StudySharing *out, Error *err) {
    int c = (int)s->cluster.cores_per_node;
    double solo = 0, shared = INFINITY, waited = 0;
    bool ok = profile_total_s(solo_path, &solo, err);
    for (int take = 0; ok && take < CALIBRATION_TAKES; take++) {
        double shared_take = 0, beside_take = 0;
        const char *suffix = take ? "-again" : "";
        char shared_name[32], beside_name[32];
        snprintf(shared_name, sizeof shared_name, "shared%s", suffix);
        snprintf(beside_name, sizeof beside_name, "beside-waiting%s", suffix);
        ok = profiles_at_once(s, p, dir, shared_name, c, 0, self_exe, log, &shared_take, err) &&
             profiles_at_once(s, p, dir, beside_name, c, c, self_exe, log, &beside_take, err);
        shared = fmin(shared, shared_take);
        waited += ok ? beside_take / shared_take / CALIBRATION_TAKES : 0;
    }
    if (!ok) return false;
    double slowdown = shared / solo, cores = (double)c / slowdown;
    out->cores_per_node = cores < 1 ? 1 : cores > c ? c : cores;
    out->wait_cost = fmin(0.9, fmax(0.0, 1.0 - 1.0 / waited));
    fprintf(log, "calibration: %d ranks computing at once each run %.2fx slower than one alone: the %d cores are "
                 "worth %.2f (cluster.cores_per_node)\n", c, slowdown, c, out->cores_per_node);
    fprintf(log, "calibration: beside %d ranks that wait they run %.2fx slower again: a waiting rank takes %.2f of a "
                 "busy core (cluster.wait_cost)\n", c, waited, out->wait_cost);
    return true;
}

// Takes one profile into `path` unless an earlier run of this study did (--resume).
static bool take_profile(const StudyConfig *s, const StudyPoint *p, const char *path, const char *log_path,
                         const char *self_exe, FILE *log, Error *err) {
    if (access(path, R_OK) == 0) {
        fprintf(log, "calibration: %s (measured before) for %s\n", path, p->label);
        return true;
    }
    fprintf(log, "calibration: profiling for %s ...\n", p->label);
    fflush(log);
    char **argv = profile_argv(s, p, self_exe, path, "7");
    LaunchJob job;
    LaunchResult lr;
    bool ok = launch_start(argv, log_path, &job, err) && profile_finish(&job, s, p, log_path, &lr, err);
    argv_free(argv);
    if (ok) fprintf(log, "calibration: %s in %.0f s\n", path, lr.seconds);
    return ok;
}

// ---- the layers timed inside training steps -----------------------------------------------------

// `self_exe train EXP` of point p's model, input size, precision and micro-batch on one rank (one
// stage, one replica, gpipe over the point's micro-batches), warm-up + steps batches, into
// <runs>/<name>; the executor writes each layer's mean time over the batches after the first to
// <runs>/<name>/profile.csv. Free with argv_free.
static char **in_steps_argv(const StudyConfig *s, const StudyPoint *p, const ExperimentConfig *cfg,
                            const char *self_exe, const char *runs, const char *name) {
    int64_t micro_batches = cfg->parallel.micro_batches;
    int64_t batch = cfg->train.batch / cfg->parallel.replicas;
    char *sets[] = {
        study_printf("parallel.stages=1"),
        study_printf("parallel.chunks=1"),
        study_printf("parallel.replicas=1"),
        study_printf("parallel.schedule=gpipe"),
        study_printf("parallel.partition=auto"),
        study_printf("parallel.micro_batches=%lld", (long long)micro_batches),
        study_printf("train.batch=%lld", (long long)batch),
        study_printf("train.nbs=%lld", (long long)batch),
        study_printf("train.max_steps=%lld", (long long)(s->measure.warmup + s->measure.steps)),
        study_printf("output.dir=%s", runs),
        study_printf("name=%s", name),
        study_printf("output.plots=false"),
    };
    size_t n_sets = sizeof sets / sizeof sets[0];
    int a;
    char **argv = point_argv(self_exe, "train", s, p, 2 * n_sets, &a);
    for (size_t k = 0; k < n_sets; k++) {  // after the point's own: the last --set of a key wins
        argv[a++] = yp_strdup("--set");
        argv[a++] = sets[k];
    }
    return argv;
}

// One take of the layers inside steps for point p into <runs>/<name>/profile.csv (*path) and its
// measured.json (*run), unless an earlier run of this study finished it (--resume). False with *err on
// a failed run.
static bool take_in_steps(const StudyConfig *s, const StudyPoint *p, const char *runs, const char *name,
                          const char *self_exe, FILE *log, char *path, StudyMeasurement *run, Error *err) {
    char log_path[PATH_MAX], measured[PATH_MAX];
    if (!path_format(path, PATH_MAX, err, "%s/%s/profile.csv", runs, name) ||
        !path_format(measured, sizeof measured, err, "%s/%s/measured.json", runs, name) ||
        !path_format(log_path, sizeof log_path, err, "%s/%s.log", runs, name))
        return false;
    if (access(measured, R_OK) == 0 && access(path, R_OK) == 0)  // measured.json comes last
        return study_point_read_measured(measured, s->measure.warmup, run, err);
    ExperimentConfig *cfg = NULL;
    if (!study_point_config_load(s, p, &cfg, err)) return false;
    fprintf(log, "calibration: timing the layers inside training steps on one rank for %s ...\n", p->label);
    fflush(log);
    char **argv = in_steps_argv(s, p, cfg, self_exe, runs, name);
    config_destroy(cfg);
    LaunchJob job;
    LaunchResult lr;
    bool ok = launch_start(argv, log_path, &job, err) && launch_wait(&job, s->measure.time_limit_s, &lr, err);
    argv_free(argv);
    if (ok && (lr.outcome != LAUNCH_EXITED || lr.exit_code != 0)) {
        char last[400];
        launch_log_last_line(log_path, last, sizeof last);
        ok = error_set(err, "yolopipe train failed: %s (log: %s)", last, log_path);
    }
    return ok && study_point_read_measured(measured, s->measure.warmup, run, err);
}

// The profile alone with each layer's forward and backward replaced by the times inside steps, and
// its optimizer and EMA per parameter byte scaled to the optimizer step measured there (`run`, of
// run->param_bytes; unscaled when the run has none); the weight-gradient share of each backward
// (zb-h1's W), the loss and the loader stay the profile's. Written to out_path; *alone_s and *steps_s
// get the layers' totals, *optimizer_scale the optimizer's factor.
static bool profile_in_steps_merge(const char *alone_path, const char *steps_path, const StudyMeasurement *run,
                                   const char *out_path, double *alone_s, double *steps_s, double *optimizer_scale,
                                   Error *err) {
    CostProfile *alone = NULL, *steps = NULL;
    bool ok = cost_profile_load(alone_path, &alone, err) && cost_profile_load(steps_path, &steps, err);
    if (ok && (steps->n_layers != alone->n_layers || steps->batch != alone->batch || steps->imgsz != alone->imgsz))
        ok = error_set(err, "%s: %d layers of %lld images at %lld px, the profile %s %d of %lld at %lld", steps_path,
                       steps->n_layers, (long long)steps->batch, (long long)steps->imgsz, alone_path, alone->n_layers,
                       (long long)alone->batch, (long long)alone->imgsz);
    *alone_s = *steps_s = 0;
    for (int i = 0; ok && i < alone->n_layers; i++) {
        CostProfileRow *row = &alone->rows[i];
        const CostProfileRow *in_step = &steps->rows[i];
        double weight_share = row->bwd_s > 0 ? row->bwd_weight_s / row->bwd_s : 0;
        *alone_s += row->fwd_s + row->bwd_s;
        *steps_s += in_step->fwd_s + in_step->bwd_s;
        row->fwd_s = in_step->fwd_s;
        row->bwd_s = in_step->bwd_s;
        row->bwd_weight_s = weight_share * in_step->bwd_s;
    }
    double alone_optimizer_s =
        ok ? (alone->optimizer_s_per_param_byte + alone->ema_s_per_param_byte) * (double)run->param_bytes : 0;
    *optimizer_scale = run->optimizer_s > 0 && run->param_bytes > 0 && alone_optimizer_s > 0
                           ? run->optimizer_s / alone_optimizer_s
                           : 1;
    if (ok) {
        alone->optimizer_s_per_param_byte *= *optimizer_scale;
        alone->ema_s_per_param_byte *= *optimizer_scale;
    }
    FsAtomicFile *af = NULL;
    if (ok && (ok = fs_atomic_file_open(out_path, &af, err))) {
        cost_profile_write(alone, fs_atomic_file_stream(af));
        ok = fs_atomic_file_commit(af, err);
    }
    cost_profile_destroy(alone);
    cost_profile_destroy(steps);
    return ok;
}

// Profile d's layers timed inside steps, two takes one round after the other (the faster kept), merged
// into <dir>/profile-d-in-steps.csv, which planned[d] then names. A run that fails leaves planned[d]
// at the profile alone and says so: the points can still be planned.
static bool calibrate_in_steps(const StudyConfig *s, const StudyPoints *points, const int *distinct, int n_distinct,
                               const char *dir, const char *self_exe, FILE *log, const char (*alone)[PATH_MAX],
                               char (*planned)[PATH_MAX], Error *err) {
    char runs[PATH_MAX];
    if (!path_format(runs, sizeof runs, err, "%s/in-steps", dir) || !fs_mkdir_p(runs, err)) return false;
    char (*fastest)[PATH_MAX] = yp_calloc((size_t)n_distinct + 1, sizeof *fastest);
    StudyMeasurement *fastest_run = yp_calloc((size_t)n_distinct + 1, sizeof *fastest_run);
    double *fastest_s = yp_calloc((size_t)n_distinct + 1, sizeof *fastest_s);
    bool *failed = yp_calloc((size_t)n_distinct + 1, sizeof *failed);
    bool ok = true;
    for (int take = 0; ok && take < CALIBRATION_TAKES; take++)
        for (int d = 0; ok && d < n_distinct; d++) {
            char name[64], path[PATH_MAX];
            snprintf(name, sizeof name, "profile-%d%s", d, take ? "-again" : "");
            Error run_err = {0};
            double total = 0;
            StudyMeasurement run;
            if (failed[d]) continue;
            if (!take_in_steps(s, &points->points[distinct[d]], runs, name, self_exe, log, path, &run, &run_err) ||
                !profile_total_s(path, &total, &run_err)) {
                failed[d] = true;
                fprintf(log, "calibration: the layers inside steps for %s: %s; planning with the profile alone\n",
                        points->points[distinct[d]].label, run_err.message);
                continue;
            }
            if (!take || total < fastest_s[d]) {
                fastest_s[d] = total;
                fastest_run[d] = run;
                snprintf(fastest[d], sizeof fastest[d], "%s", path);
            }
        }
    for (int d = 0; ok && d < n_distinct; d++) {
        double alone_s, steps_s, optimizer_scale;
        if (failed[d]) continue;
        ok = path_format(planned[d], sizeof planned[d], err, "%s/profile-%d-in-steps.csv", dir, d) &&
             profile_in_steps_merge(alone[d], fastest[d], &fastest_run[d], planned[d], &alone_s, &steps_s,
                                    &optimizer_scale, err);
        if (ok)
            fprintf(log,
                    "calibration: inside training steps the layers take %.1f ms a micro-batch, alone %.1f ms "
                    "(%.2fx), the optimizer step %.1f ms (%.2fx): planning with %s\n",
                    1e3 * steps_s, 1e3 * alone_s, steps_s / alone_s, 1e3 * fastest_run[d].optimizer_s, optimizer_scale,
                    planned[d]);
    }
    free(failed);
    free(fastest_s);
    free(fastest_run);
    free(fastest);
    return ok;
}

bool study_calibrate(const StudyConfig *s, const StudyPoints *points, const char *out_dir, const char *self_exe,
                     FILE *log, char ***profiles_out, StudySharing *sharing, Error *err) {
    *sharing = (StudySharing){.wait_cost = -1};
    char dir[PATH_MAX];
    if (!path_format(dir, sizeof dir, err, "%s/profiles", out_dir) || !fs_mkdir_p(dir, err)) return false;
    char **profiles = yp_calloc((size_t)points->n + 1, sizeof *profiles);
    char (*keys)[1024] = yp_calloc((size_t)points->n + 1, sizeof *keys);
    int *distinct = yp_calloc((size_t)points->n + 1, sizeof *distinct);  // its first point
    int *profile_of = yp_calloc((size_t)points->n + 1, sizeof *profile_of);  // -1: planned as invalid
    int n_distinct = 0;
    for (int i = 0; i < points->n; i++) {
        Error point_err = {0};
        profile_of[i] = -1;
        if (!profile_key(s, &points->points[i], keys[i], sizeof keys[i], &point_err)) continue;
        int d = 0;
        while (d < n_distinct && strcmp(keys[distinct[d]], keys[i])) d++;
        if (d == n_distinct) distinct[n_distinct++] = i;
        profile_of[i] = d;
    }
    // Each profile twice, one round after the other: a machine that others share can only slow a
    // profile down, so of two takes apart in time the faster is the quieter machine's.
    char (*chosen)[PATH_MAX] = yp_calloc((size_t)n_distinct + 1, sizeof *chosen);
    double *first_total = yp_calloc((size_t)n_distinct + 1, sizeof *first_total);
    bool ok = true;
    for (int take = 0; ok && take < CALIBRATION_TAKES; take++)
        for (int d = 0; ok && d < n_distinct; d++) {
            char path[PATH_MAX], log_path[PATH_MAX];
            const char *suffix = take ? "-again" : "";
            ok = path_format(path, sizeof path, err, "%s/profile-%d%s.csv", dir, d, suffix) &&
                 path_format(log_path, sizeof log_path, err, "%s/profile-%d%s.log", dir, d, suffix) &&
                 take_profile(s, &points->points[distinct[d]], path, log_path, self_exe, log, err);
            double total = 0;
            ok = ok && profile_total_s(path, &total, err);
            if (ok && (!take || total < first_total[d])) snprintf(chosen[d], sizeof chosen[d], "%s", path);
            if (ok && !take) first_total[d] = total;
            if (ok && take)
                fprintf(log, "calibration: the layers take %.1f ms, then %.1f ms a micro-batch: keeping %s\n",
                        1e3 * first_total[d], 1e3 * total, chosen[d]);
        }
    char (*planned)[PATH_MAX] = yp_calloc((size_t)n_distinct + 1, sizeof *planned);
    for (int d = 0; d < n_distinct; d++) snprintf(planned[d], sizeof planned[d], "%s", chosen[d]);
    ok = ok && calibrate_in_steps(s, points, distinct, n_distinct, dir, self_exe, log, chosen, planned, err);
    for (int i = 0; ok && i < points->n; i++)
        if (profile_of[i] >= 0) profiles[i] = yp_strdup(planned[profile_of[i]]);
    if (ok && n_distinct > 0 && s->cluster.cores_per_node >= 2)
        ok = measure_sharing(s, &points->points[distinct[0]], dir, chosen[0], self_exe, log, sharing, err);
    free(planned);
    free(chosen);
    free(first_total);
    free(profile_of);
    free(distinct);
    free(keys);
    if (!ok) {
        study_calibrate_free(points->n, profiles);
        return false;
    }
    *profiles_out = profiles;
    return true;
}

void study_calibrate_free(int n, char **profiles) {
    if (!profiles) return;
    for (int i = 0; i < n; i++) free(profiles[i]);
    free(profiles);
}
