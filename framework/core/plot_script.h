// The one plotting script, yolopipe_plot.py (experiments/ in the source tree), which meson copies
// beside the yolopipe binary in the build directory and installs beside it in bindir: found as
// <the binary's folder>/yolopipe_plot.py and run with the first python3 that imports matplotlib
// (Debian's /usr/bin/python3 first: python3-matplotlib installs into it, whatever python3 PATH finds).
// Shared by `yolopipe study` (its figures) and the trainer (the run directory's curves).
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "framework/core/error.h"
#include "framework/core/path.h"
#include "framework/core/process.h"

typedef struct PlotScript {
    char python[PATH_MAX];    // the python3 that imports matplotlib
    char script[PATH_MAX];    // <the binary's folder>/yolopipe_plot.py
    char log_path[PATH_MAX];  // the script's output (and the matplotlib check's)
    bool running;
    LaunchJob job;
} PlotScript;

// Finds the script beside self_exe and a python3 with matplotlib, checked with its output to
// log_path. False when either is missing, with *notice set to one line saying what is missing and
// how to get it (no newline), for the caller to print once.
bool plot_script_find(const char *self_exe, const char *log_path, PlotScript *ps, char *notice, size_t cap);

// Starts `python script args...` (args ends with NULL) in the background, its output to the log.
// The previous one must have ended (plot_script_poll or plot_script_wait).
bool plot_script_start(PlotScript *ps, const char *const *args, Error *err);

// Without blocking: reaps a script that has ended. Returns whether none is running now; *failed
// (may be NULL) is set when the one just reaped did not exit 0.
bool plot_script_poll(PlotScript *ps, bool *failed);

// Waits for the running script (time_limit_s > 0: killed past it). Returns whether it exited 0 (true
// when none was running).
bool plot_script_wait(PlotScript *ps, double time_limit_s);
