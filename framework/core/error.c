#include "framework/core/error.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Keeps a message one line whatever user text it quotes (a YAML scalar that spans lines, a file name
// with a newline in it): control characters become escapes, "\n" for a newline, "\x1B" for ESC.
static void message_make_one_line(Error *err) {
    const unsigned char *p = (const unsigned char *)err->message;
    while (*p >= 0x20 && *p != 0x7F) p++;
    if (!*p) return;  // the usual case: nothing to escape
    char out[sizeof err->message];
    size_t n = 0;
    for (p = (const unsigned char *)err->message; *p; p++) {
        char escape[8] = {(char)*p, '\0'};
        if (*p < 0x20 || *p == 0x7F) {
            const char *named = *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t" : NULL;
            if (named) snprintf(escape, sizeof escape, "%s", named);
            else snprintf(escape, sizeof escape, "\\x%02X", *p);
        }
        size_t len = strlen(escape);
        if (n + len >= sizeof out) break;  // truncated, as vsnprintf truncates
        memcpy(out + n, escape, len);
        n += len;
    }
    out[n] = '\0';
    memcpy(err->message, out, n + 1);
}

bool error_at(Error *err, const char *file, int line, int col, const char *fmt, ...) {
    err->code = ERROR_CODE_NONE;
    int used = snprintf(err->message, sizeof err->message, "%s:%d:%d: ", file, line, col);
    if (used >= 0 && (size_t)used < sizeof err->message) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message + used, sizeof err->message - (size_t)used, fmt, ap);
        va_end(ap);
    }
    message_make_one_line(err);
    return false;
}

bool error_set(Error *err, const char *fmt, ...) {
    err->code = ERROR_CODE_NONE;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    message_make_one_line(err);
    return false;
}

// See error_set_fatal_hook: set once at start-up, read only when the process is about to end.
static struct {
    ErrorFatalHook hook;
    void *context;
} fatal_hook;

void error_set_fatal_hook(ErrorFatalHook hook, void *context) {
    fatal_hook.hook = hook;
    fatal_hook.context = context;
}

static _Noreturn void fatal_end(const char *message) {
    if (fatal_hook.hook) fatal_hook.hook(message, fatal_hook.context);
    fprintf(stderr, "yolopipe: %s\n", message);
    abort();
}

_Noreturn void yp_fatal_at(const char *file, int line, const char *fmt, ...) {
    char message[1024];
    int used = snprintf(message, sizeof message, "internal error at %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    if (used >= 0 && (size_t)used < sizeof message) vsnprintf(message + used, sizeof message - (size_t)used, fmt, ap);
    va_end(ap);
    fatal_end(message);
}

_Noreturn void yp_library_failure(const char *library, const char *call, const char *message, const char *file,
                                  int line) {
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    char text[1024];
    snprintf(text, sizeof text, "%s error on %s (pid %d) at %s:%d: %s: %s", library, host, (int)getpid(), file, line,
             call, message);
    fatal_end(text);
}

void *yp_malloc(size_t n_bytes) {
    void *p = malloc(n_bytes ? n_bytes : 1);
    if (!p) yp_fatal("out of memory allocating %zu bytes", n_bytes);
    return p;
}

void *yp_calloc(size_t count, size_t n_bytes) {
    void *p = calloc(count ? count : 1, n_bytes ? n_bytes : 1);
    if (!p) yp_fatal("out of memory allocating %zu x %zu bytes", count, n_bytes);
    return p;
}

void *yp_realloc(void *ptr, size_t n_bytes) {
    void *p = realloc(ptr, n_bytes ? n_bytes : 1);
    if (!p) yp_fatal("out of memory reallocating %zu bytes", n_bytes);
    return p;
}

char *yp_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(yp_malloc(n), s, n);
}
