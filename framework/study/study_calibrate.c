// cluster.calibrate: the per-layer and step costs the simulator plans with, measured on this machine
// by `yolopipe profile` before the points run, one profile per distinct (model, scale, input size,
// micro-batch, classes) among them, with the threads each rank will have.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/config/config.h"
#include "framework/core/fsutil.h"
#include "framework/core/path.h"
#include "framework/study/study_calibrate.h"
#include "framework/study/study_launch.h"

// What a profile depends on, as text: two points with the same key share a profile.
static bool profile_key(const StudyConfig *s, const StudyPoint *p, char *key, size_t cap, Error *err) {
    char **overrides = yp_calloc((size_t)p->n_settings + 1, sizeof *overrides);
    for (int i = 0; i < p->n_settings; i++) {
        size_t n = strlen(p->settings[i].key) + strlen(p->settings[i].value) + 2;
        overrides[i] = yp_malloc(n);
        snprintf(overrides[i], n, "%s=%s", p->settings[i].key, p->settings[i].value);
    }
    ExperimentConfig *cfg = NULL;
    bool ok = config_load(s->experiment, p->n_settings, overrides, &cfg, err);
    if (ok) {
        const ParallelConfig *pc = &cfg->parallel;
        int64_t micro = cfg->train.batch / (pc->replicas * pc->micro_batches);
        snprintf(key, cap, "%s|%s|%s|%lld|%lld|%s", cfg->model, cfg->scale ? cfg->scale : "", cfg->data,
                 (long long)cfg->train.imgsz, (long long)micro, config_precision_names[cfg->device.precision]);
    }
    config_destroy(cfg);
    for (int i = 0; i < p->n_settings; i++) free(overrides[i]);
    free(overrides);
    return ok;
}

bool study_calibrate(const StudyConfig *s, const StudyPoints *points, const char *out_dir, const char *self_exe,
                     FILE *log, char ***profiles_out, Error *err) {
    char dir[PATH_MAX];
    if (!path_format(dir, sizeof dir, err, "%s/profiles", out_dir) || !fs_mkdir_p(dir, err)) return false;
    char **profiles = yp_calloc((size_t)points->n + 1, sizeof *profiles);
    char (*keys)[1024] = yp_calloc((size_t)points->n + 1, sizeof *keys);
    int n_distinct = 0;
    bool ok = true;
    for (int i = 0; ok && i < points->n; i++) {
        Error point_err = {0};
        if (!profile_key(s, &points->points[i], keys[i], sizeof keys[i], &point_err)) continue;  // planned as invalid
        int first = 0;
        while (strcmp(keys[first], keys[i])) first++;
        if (first < i) {
            profiles[i] = profiles[first] ? yp_strdup(profiles[first]) : NULL;
            continue;
        }
        char path[PATH_MAX], log_path[PATH_MAX];
        ok = path_format(path, sizeof path, err, "%s/profile-%d.csv", dir, n_distinct) &&
             path_format(log_path, sizeof log_path, err, "%s/profile-%d.log", dir, n_distinct);
        n_distinct++;
        if (!ok) break;
        if (access(path, R_OK) == 0) {  // measured by an earlier run of this study (--resume)
            fprintf(log, "calibration: %s (measured before) for %s\n", path, points->points[i].label);
            profiles[i] = yp_strdup(path);
            continue;
        }
        const StudyPoint *p = &points->points[i];
        int n_args = 4 + 2 * p->n_settings + 4;
        char **argv = yp_calloc((size_t)n_args + 1, sizeof *argv);
        int a = 0;
        argv[a++] = (char *)self_exe;
        argv[a++] = "profile";
        argv[a++] = s->experiment;
        for (int k = 0; k < p->n_settings; k++) {
            size_t n = strlen(p->settings[k].key) + strlen(p->settings[k].value) + 2;
            argv[a++] = "--set";
            argv[a] = yp_malloc(n);
            snprintf(argv[a++], n, "%s=%s", p->settings[k].key, p->settings[k].value);
        }
        argv[a++] = "--out";
        argv[a++] = path;
        argv[a++] = "--repeats";
        argv[a++] = "7";
        fprintf(log, "calibration: profiling for %s ...\n", p->label);
        fflush(log);
        LaunchResult lr;
        ok = launch_run(argv, log_path, s->measure.time_limit_s, &lr, err);
        if (ok && (lr.outcome != LAUNCH_EXITED || lr.exit_code != 0)) {
            char last[400];
            launch_log_last_line(log_path, last, sizeof last);
            ok = error_set(err, "calibration: yolopipe profile failed for %s: %s (log: %s)", p->label, last, log_path);
        }
        if (ok) {
            fprintf(log, "calibration: %s in %.0f s\n", path, lr.seconds);
            profiles[i] = yp_strdup(path);
        }
        for (int k = 0; k < p->n_settings; k++) free(argv[4 + 2 * k]);
        free(argv);
    }
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
