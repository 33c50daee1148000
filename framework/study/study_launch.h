// Runs one measured study point: the study's launcher around `yolopipe train`, with a time limit,
// its output to a log file, in a process group of its own so that a hung job dies whole.
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

// The launcher template split at white space with {world} and {nodes} replaced in each word:
// "mpirun -np {world} --oversubscribe" → mpirun, -np, 4, --oversubscribe. *argv gets n words then
// NULL (free each and the array with launch_words_free). False when a word names another {field}.
bool launch_expand_template(const char *tmpl, long world, long nodes, int *n, char ***argv, Error *err);
void launch_words_free(int n, char **words);

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

// The last non-empty line of a log (at most cap - 1 bytes), for a failed point's reason; "" if none.
void launch_log_last_line(const char *log_path, char *out, size_t cap);
