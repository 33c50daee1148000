#include "framework/runtime/failure.h"

#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { FAILURE_ACTIVITY_BYTES = 512, FAILURE_PREFIX_BYTES = 128 };

static const char signal_reason[] = " (the launcher ends the job after another rank failed) while ";
static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP};

// See failure.h. The activity is double-buffered: failure_set_activity writes the buffer that is
// not current and then flips `current`, so a signal handler reads a finished text (and even if a
// second update overtakes it, a NUL stays at the end of each buffer, so it never reads past it).
// failure_wait_begin writes the activity and its wait into the other buffer the same way, and
// failure_wait_end flips back to the untouched one (`before_wait`).
static struct {
    Transport *transport;
    Topology topo;
    char signal_prefix[FAILURE_PREFIX_BYTES];  // "yolopipe: rank R (...): stopped by signal "
    char activity[2][FAILURE_ACTIVITY_BYTES];
    atomic_int current;
    int before_wait;  // the buffer current before failure_wait_begin
} failure = {.activity = {"starting up", "starting up"}};

// Async-signal-safe string append (no strlen or stdio in a signal handler).
static size_t append(char *dst, size_t used, size_t capacity, const char *src, size_t src_max) {
    for (size_t i = 0; i < src_max && src[i] && used < capacity; i++) dst[used++] = src[i];
    return used;
}

static void failure_on_signal(int sig) {
    char line[FAILURE_PREFIX_BYTES + sizeof signal_reason + FAILURE_ACTIVITY_BYTES + 16];
    size_t n = append(line, 0, sizeof line, failure.signal_prefix, sizeof failure.signal_prefix);
    char digits[12];
    size_t n_digits = 0;
    for (int v = sig; v > 0 || n_digits == 0; v /= 10) digits[n_digits++] = (char)('0' + v % 10);
    while (n_digits > 0 && n < sizeof line) line[n++] = digits[--n_digits];
    n = append(line, n, sizeof line, signal_reason, sizeof signal_reason);
    n = append(line, n, sizeof line - 1, failure.activity[atomic_load(&failure.current)], FAILURE_ACTIVITY_BYTES);
    if (n > sizeof line - 1) n = sizeof line - 1;  // room for the newline whatever came before
    line[n++] = '\n';
    for (size_t done = 0; done < n;) {
        ssize_t w = write(STDERR_FILENO, line + done, n - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    _exit(128 + sig);
}

static void failure_on_fatal(const char *message, void *context) {
    Transport *t = context;
    const Topology *p = &failure.topo;
    fprintf(stderr, "yolopipe: rank %d (pipeline rank %d, replica %d) while %s: %s\n", p->world_rank, p->pipeline_rank,
            p->replica, failure.activity[atomic_load(&failure.current)], message);
    t->ops->abort(t, 1);
}

void failure_install(const Topology *topo, Transport *t) {
    failure.transport = t;
    failure.topo = *topo;
    snprintf(failure.signal_prefix, sizeof failure.signal_prefix,
             "yolopipe: rank %d (pipeline rank %d, replica %d): stopped by signal ", topo->world_rank,
             topo->pipeline_rank, topo->replica);
    struct sigaction sa = {.sa_handler = failure_on_signal};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++)
        YP_CHECK(sigaction(stop_signals[i], &sa, NULL) == 0);
    error_set_fatal_hook(failure_on_fatal, t);
}

void failure_set_activity(const char *fmt, ...) {
    int next = 1 - atomic_load(&failure.current);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(failure.activity[next], FAILURE_ACTIVITY_BYTES, fmt, ap);
    va_end(ap);
    atomic_store(&failure.current, next);
}

void failure_wait_begin(const char *what) {
    int now = atomic_load(&failure.current);
    char *next = failure.activity[1 - now];
    // The buffers are distinct, but the compiler sees one object: copy the activity first, then append.
    memcpy(next, failure.activity[now], FAILURE_ACTIVITY_BYTES);
    size_t used = strnlen(next, FAILURE_ACTIVITY_BYTES - 1);
    snprintf(next + used, FAILURE_ACTIVITY_BYTES - used, ", waiting for %s", what);
    failure.before_wait = now;
    atomic_store(&failure.current, 1 - now);
}

void failure_wait_end(void) { atomic_store(&failure.current, failure.before_wait); }

_Noreturn void failure_user_error(const Error *err) {
    fprintf(stderr, "%s\n", err->message);
    if (failure.transport) failure.transport->ops->abort(failure.transport, YP_EXIT_USAGE);
    exit(YP_EXIT_USAGE);
}
