// Child processes: fork, exec in its own process group, wait with a limit.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "framework/core/clock.h"
#include "framework/core/process.h"

static void sleep_s(double s) {
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

bool launch_start(char *const *argv, const char *log_path, LaunchJob *job, Error *err) {
    int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (log < 0) return error_set(err, "%s: cannot create: %s", log_path, strerror(errno));
    pid_t parent = getpid();
    job->start_s = clock_monotonic_s();
    pid_t pid = fork();
    if (pid < 0) {
        close(log);
        return error_set(err, "cannot start %s: %s", argv[0], strerror(errno));
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127);  // the study died before prctl took effect
        dup2(log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(log);
    setpgid(pid, pid);  // also here: whichever of parent and child runs first
    job->pid = pid;
    return true;
}

// What waitpid's status says, timed from the job's start.
static LaunchResult launch_result(const LaunchJob *job, int status, bool timed_out) {
    double seconds = clock_monotonic_s() - job->start_s;
    if (timed_out) return (LaunchResult){LAUNCH_TIMED_OUT, 0, seconds};
    if (WIFSIGNALED(status)) return (LaunchResult){LAUNCH_SIGNALED, WTERMSIG(status), seconds};
    return (LaunchResult){LAUNCH_EXITED, WEXITSTATUS(status), seconds};
}

bool launch_wait(const LaunchJob *job, double time_limit_s, LaunchResult *out, Error *err) {
    pid_t pid = job->pid;
    int status = 0;
    bool timed_out = false;
    double term_at = 0;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        if (done < 0 && errno != EINTR) return error_set(err, "waiting for process %d: %s", (int)pid, strerror(errno));
        double now = clock_monotonic_s() - job->start_s;
        if (!timed_out && time_limit_s > 0 && now > time_limit_s) {
            timed_out = true;
            term_at = now;
            kill(-pid, SIGTERM);
        } else if (timed_out && now > term_at + 5.0) {
            kill(-pid, SIGKILL);
        }
        sleep_s(0.05);
    }
    if (timed_out) kill(-pid, SIGKILL);  // whatever of the group outlived its leader
    *out = launch_result(job, status, timed_out);
    return true;
}

bool launch_run(char *const *argv, const char *log_path, double time_limit_s, LaunchResult *out, Error *err) {
    LaunchJob job;
    return launch_start(argv, log_path, &job, err) && launch_wait(&job, time_limit_s, out, err);
}


bool launch_poll(const LaunchJob *job, bool *ended, LaunchResult *out, Error *err) {
    int status = 0;
    pid_t done;
    while ((done = waitpid(job->pid, &status, WNOHANG)) < 0 && errno == EINTR) {}
    if (done < 0) return error_set(err, "waiting for process %d: %s", job->pid, strerror(errno));
    *ended = done == job->pid;
    if (*ended) *out = launch_result(job, status, false);
    return true;
}
