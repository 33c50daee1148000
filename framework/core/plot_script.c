#include "framework/core/plot_script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool plot_script_find(const char *self_exe, const char *log_path, PlotScript *ps, char *notice, size_t cap) {
    *ps = (PlotScript){0};
    Error err = {0};
    char *dir = path_dirname(self_exe);
    bool ok = path_format(ps->script, sizeof ps->script, &err, "%s/yolopipe_plot.py", dir) &&
              path_format(ps->log_path, sizeof ps->log_path, &err, "%s", log_path);
    free(dir);
    if (!ok || access(ps->script, R_OK) != 0) {
        snprintf(notice, cap, "%s is missing (build or install yolopipe with meson, which puts it beside the binary)",
                 ok ? ps->script : "yolopipe_plot.py");
        return false;
    }
    const char *pythons[] = {"/usr/bin/python3", "python3"};
    for (size_t i = 0; i < sizeof pythons / sizeof *pythons; i++) {
        char *check[] = {(char *)pythons[i], "-c", "import matplotlib", NULL};
        LaunchResult lr;
        if (launch_run(check, log_path, 60, &lr, &err) && lr.outcome == LAUNCH_EXITED && lr.exit_code == 0) {
            snprintf(ps->python, sizeof ps->python, "%s", pythons[i]);
            return true;
        }
    }
    snprintf(notice, cap, "no python3 with matplotlib (Debian: apt-get install python3-matplotlib)");
    return false;
}

bool plot_script_start(PlotScript *ps, const char *const *args, Error *err) {
    YP_CHECK(!ps->running);
    enum { MAX_ARGS = 16 };
    char *argv[MAX_ARGS + 3] = {ps->python, ps->script};
    int n = 2;
    for (; args[n - 2]; n++) {
        YP_CHECK(n - 2 < MAX_ARGS);
        argv[n] = (char *)args[n - 2];
    }
    argv[n] = NULL;
    ps->running = launch_start(argv, ps->log_path, &ps->job, err);
    return ps->running;
}

bool plot_script_poll(PlotScript *ps, bool *failed) {
    if (failed) *failed = false;
    if (!ps->running) return true;
    bool ended = false;
    LaunchResult lr;
    Error err = {0};
    if (!launch_poll(&ps->job, &ended, &lr, &err)) ended = true, lr = (LaunchResult){LAUNCH_SIGNALED, 0, 0};
    if (!ended) return false;
    ps->running = false;
    if (failed) *failed = lr.outcome != LAUNCH_EXITED || lr.exit_code != 0;
    return true;
}

bool plot_script_wait(PlotScript *ps, double time_limit_s) {
    if (!ps->running) return true;
    LaunchResult lr;
    Error err = {0};
    ps->running = false;
    return launch_wait(&ps->job, time_limit_s, &lr, &err) && lr.outcome == LAUNCH_EXITED && lr.exit_code == 0;
}
