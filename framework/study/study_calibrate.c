// cluster.calibrate: the per-layer and step costs the simulator plans with, measured on this machine
// by `yolopipe profile` before the points run, one profile per distinct (model, scale, input size,
// micro-batch, classes) among them, with the threads each rank will have.
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

// `self_exe profile EXP --set <point's settings>... --out path --repeats N`; free with argv_free.
static char **profile_argv(const StudyConfig *s, const StudyPoint *p, const char *self_exe, const char *path,
                           const char *repeats) {
    char **argv = yp_calloc((size_t)(4 + 2 * p->n_settings + 4) + 1, sizeof *argv);
    int a = 0;
    argv[a++] = yp_strdup(self_exe);
    argv[a++] = yp_strdup("profile");
    argv[a++] = yp_strdup(s->experiment);
    for (int k = 0; k < p->n_settings; k++) {
        argv[a++] = yp_strdup("--set");
        argv[a++] = study_setting_arg(&p->settings[k]);
    }
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

// C copies of point p's profile at once against the one alone (solo_path): the cores' worth; then
// beside C waiting processes: what a waiting rank takes from a busy core.
static bool measure_sharing(const StudyConfig *s, const StudyPoint *p, const char *dir, const char *solo_path,
                            const char *self_exe, FILE *log, StudySharing *out, Error *err) {
    int c = (int)s->cluster.cores_per_node;
    double solo = 0, shared = 0, beside_waiting = 0;
    bool ok = profile_total_s(solo_path, &solo, err) &&
              profiles_at_once(s, p, dir, "shared", c, 0, self_exe, log, &shared, err) &&
              profiles_at_once(s, p, dir, "beside-waiting", c, c, self_exe, log, &beside_waiting, err);
    if (!ok) return false;
    double slowdown = shared / solo, cores = (double)c / slowdown, waited = beside_waiting / shared;
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

enum { CALIBRATION_TAKES = 2 };

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
                fprintf(log, "calibration: the layers take %.1f ms, then %.1f ms a micro-batch: planning with %s\n",
                        1e3 * first_total[d], 1e3 * total, chosen[d]);
        }
    for (int i = 0; ok && i < points->n; i++)
        if (profile_of[i] >= 0) profiles[i] = yp_strdup(chosen[profile_of[i]]);
    if (ok && n_distinct > 0 && s->cluster.cores_per_node >= 2)
        ok = measure_sharing(s, &points->points[distinct[0]], dir, chosen[0], self_exe, log, sharing, err);
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
