#include "framework/runtime/failure.h"

#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { FAILURE_ACTIVITY_BYTES = 512, FAILURE_PREFIX_BYTES = 128 };

static const char stop_text[] = "stopped by signal ";
static const char stop_reason[] = " (the launcher ends the job after another rank failed) while ";
static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP};
// A crash says what the rank was doing and where in the code, then dies of its signal as it would
// have (core dump, exit status). Not under a sanitizer, whose own handler reports more.
static const char crash_text[] = "crashed by signal ";
static const char crash_reason[] = " while ";
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
static const int crash_signals[] = {0};
#else
static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#endif
enum { FAILURE_BACKTRACE_FRAMES = 48 };

// See failure.h. The activity is double-buffered: failure_set_activity writes the buffer that is
// not current and then flips `current`, so a signal handler reads a finished text (and even if a
// second update overtakes it, a NUL stays at the end of each buffer, so it never reads past it).
// failure_wait_begin writes the activity and its wait into the other buffer the same way, and
// failure_wait_end flips back to the untouched one (`before_wait`).
static struct {
    Transport *transport;
    Topology topo;
    char rank_prefix[FAILURE_PREFIX_BYTES];  // "yolopipe: rank R (pipeline rank P, replica D): "
    char activity[2][FAILURE_ACTIVITY_BYTES];
    atomic_int current;
    int before_wait;  // the buffer current before failure_wait_begin
} failure = {.activity = {"starting up", "starting up"}};

// Async-signal-safe string append (no strlen or stdio in a signal handler).
static size_t append(char *dst, size_t used, size_t capacity, const char *src, size_t src_max) {
    for (size_t i = 0; i < src_max && src[i] && used < capacity; i++) dst[used++] = src[i];
    return used;
}

// Writes "<rank prefix><text><sig><reason><activity>\n" to stderr with async-signal-safe calls only.
static void failure_write_signal_line(int sig, const char *text, size_t text_max, const char *reason,
                                      size_t reason_max) {
    char line[FAILURE_PREFIX_BYTES + sizeof stop_text + sizeof stop_reason + FAILURE_ACTIVITY_BYTES + 16];
    size_t n = append(line, 0, sizeof line, failure.rank_prefix, sizeof failure.rank_prefix);
    n = append(line, n, sizeof line, text, text_max);
    char digits[12];
    size_t n_digits = 0;
    for (int v = sig; v > 0 || n_digits == 0; v /= 10) digits[n_digits++] = (char)('0' + v % 10);
    while (n_digits > 0 && n < sizeof line) line[n++] = digits[--n_digits];
    n = append(line, n, sizeof line, reason, reason_max);
    n = append(line, n, sizeof line - 1, failure.activity[atomic_load(&failure.current)], FAILURE_ACTIVITY_BYTES);
    if (n > sizeof line - 1) n = sizeof line - 1;  // room for the newline whatever came before
    line[n++] = '\n';
    for (size_t done = 0; done < n;) {
        ssize_t w = write(STDERR_FILENO, line + done, n - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
}

static void failure_on_signal(int sig) {
    failure_write_signal_line(sig, stop_text, sizeof stop_text, stop_reason, sizeof stop_reason);
    _exit(128 + sig);
}

static void failure_on_crash(int sig) {
    failure_write_signal_line(sig, crash_text, sizeof crash_text, crash_reason, sizeof crash_reason);
    void *frames[FAILURE_BACKTRACE_FRAMES];
    backtrace_symbols_fd(frames, backtrace(frames, FAILURE_BACKTRACE_FRAMES), STDERR_FILENO);
    raise(sig);  // SA_RESETHAND restored the default action: the rank dies of sig once this returns
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
    snprintf(failure.rank_prefix, sizeof failure.rank_prefix, "yolopipe: rank %d (pipeline rank %d, replica %d): ",
             topo->world_rank, topo->pipeline_rank, topo->replica);
    struct sigaction sa = {.sa_handler = failure_on_signal};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++)
        YP_CHECK(sigaction(stop_signals[i], &sa, NULL) == 0);
    // backtrace loads libgcc's unwinder on its first call: made here, not inside the crash handler.
    void *frame;
    (void)backtrace(&frame, 1);
    struct sigaction crash = {.sa_handler = failure_on_crash, .sa_flags = SA_RESETHAND};
    sigemptyset(&crash.sa_mask);
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        if (crash_signals[i]) YP_CHECK(sigaction(crash_signals[i], &crash, NULL) == 0);
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
