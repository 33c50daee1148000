// Launching a measured point: fork, exec in its own process group, wait with a limit.
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
#include "framework/study/study_launch.h"

void launch_words_free(int n, char **words) {
    for (int i = 0; i < n; i++) free(words[i]);
    free(words);
}

// word with each {world} and {nodes} replaced; NULL for another {field}.
static char *expand_word(const char *word, size_t len, long world, long nodes, char *bad, size_t bad_cap) {
    size_t cap = len + 64, n = 0;
    char *out = yp_malloc(cap);
    for (size_t i = 0; i < len;) {
        if (word[i] == '{') {
            const char *close = memchr(word + i, '}', len - i);
            size_t field_len = close ? (size_t)(close - (word + i)) - 1 : 0;
            long value;
            if (close && field_len == 5 && !strncmp(word + i + 1, "world", 5)) value = world;
            else if (close && field_len == 5 && !strncmp(word + i + 1, "nodes", 5)) value = nodes;
            else {
                snprintf(bad, bad_cap, "%.*s", close ? (int)field_len + 2 : (int)(len - i), word + i);
                free(out);
                return NULL;
            }
            n += (size_t)snprintf(out + n, cap - n, "%ld", value);
            i += field_len + 2;
        } else out[n++] = word[i++];
        if (n + 24 > cap) out = yp_realloc(out, cap *= 2);
    }
    out[n] = '\0';
    return out;
}

bool launch_expand_template(const char *tmpl, long world, long nodes, int *n_out, char ***argv_out, Error *err) {
    int n = 0, cap = 8;
    char **words = yp_malloc((size_t)cap * sizeof *words);
    for (const char *s = tmpl; *s;) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        size_t len = strcspn(s, " \t");
        char bad[64];
        char *w = expand_word(s, len, world, nodes, bad, sizeof bad);
        if (!w) {
            launch_words_free(n, words);
            return error_set(err, "the launcher names %s; it may use {world} and {nodes}", bad);
        }
        if (n + 2 > cap) words = yp_realloc(words, (size_t)(cap *= 2) * sizeof *words);
        words[n++] = w;
        s += len;
    }
    words[n] = NULL;
    *n_out = n;
    *argv_out = words;
    return true;
}

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
    double seconds = clock_monotonic_s() - job->start_s;
    if (timed_out) *out = (LaunchResult){LAUNCH_TIMED_OUT, 0, seconds};
    else if (WIFSIGNALED(status)) *out = (LaunchResult){LAUNCH_SIGNALED, WTERMSIG(status), seconds};
    else *out = (LaunchResult){LAUNCH_EXITED, WEXITSTATUS(status), seconds};
    return true;
}

bool launch_run(char *const *argv, const char *log_path, double time_limit_s, LaunchResult *out, Error *err) {
    LaunchJob job;
    return launch_start(argv, log_path, &job, err) && launch_wait(&job, time_limit_s, out, err);
}

void launch_log_last_line(const char *log_path, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen(log_path, "r");
    if (!f) return;
    char line[1024];
    bool in_launcher_box = false;  // mpirun frames its own messages between lines of dashes
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "-----", 5)) {
            in_launcher_box = !in_launcher_box;
            continue;
        }
        // Progress lines rewrite themselves with \r: keep the text after the last one.
        size_t len = strlen(line);
        while (len && line[len - 1] == '\r') line[--len] = '\0';
        char *last = strrchr(line, '\r');
        const char *text = last ? last + 1 : line;
        if (*text && !in_launcher_box) snprintf(out, cap, "%s", text);
    }
    fclose(f);
}
