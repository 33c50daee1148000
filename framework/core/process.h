// Child processes: run a program with its output to a log file, in a process group of its own so
// that a hung one dies whole, with or without a time limit; the study's measured points and the
// trainer's plotting script use it.
#pragma once

#include <stdbool.h>

#include "framework/core/error.h"

typedef enum LaunchOutcome {
    LAUNCH_EXITED,    // exit_code holds the status (0: success)
    LAUNCH_SIGNALED,  // killed by a signal it did not get from us (exit_code: the signal)
    LAUNCH_TIMED_OUT, // still running at the limit: the whole group was killed
} LaunchOutcome;

typedef struct LaunchResult {
    LaunchOutcome outcome;
    int exit_code;
    double seconds;
} LaunchResult;

// Runs argv (argv[0] looked up on PATH; no shell, so values need no quoting) in a new process group
// with stdout and stderr to log_path, killing the group (SIGTERM, then SIGKILL 5 s later) when it runs
// past time_limit_s. The child gets SIGTERM if the study itself dies (a launcher such as mpirun then
// ends its job). False only when it could not be started at all.
bool launch_run(char *const *argv, const char *log_path, double time_limit_s, LaunchResult *out, Error *err);

// launch_run in two halves, for several processes at once: start, then wait (the limit counts from
// the start).
typedef struct LaunchJob {
    int pid;
    double start_s;
} LaunchJob;
bool launch_start(char *const *argv, const char *log_path, LaunchJob *job, Error *err);
bool launch_wait(const LaunchJob *job, double time_limit_s, LaunchResult *out, Error *err);


// Without blocking: whether the job has ended (then *out is filled and the process reaped).
bool launch_poll(const LaunchJob *job, bool *ended, LaunchResult *out, Error *err);
