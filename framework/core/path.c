#include "framework/core/path.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

char *path_join(const char *dir, const char *rel, PathClean clean) {
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *out = yp_malloc(n);
    if (rel[0] == '/' || !dir[0]) snprintf(out, n, "%s", rel);
    else snprintf(out, n, "%s/%s", dir, rel);
    path_clean(out, clean);
    return out;
}

void path_clean(char *path, PathClean clean) {
    if (clean == PATH_CLEAN_NONE) return;
    const bool rooted = path[0] == '/';
    size_t len = rooted ? 1 : 0;  // written so far; the writing position never passes the reading one
    size_t floor = len;           // PATH_CLEAN_DOTDOT does not remove what is before this
    for (const char *in = path + len; *in;) {
        while (*in == '/') in++;
        const size_t m = strcspn(in, "/");
        const bool dot = m == 1 && in[0] == '.', dotdot = m == 2 && in[0] == '.' && in[1] == '.';
        if (m == 0 || dot) {
            // an empty or "." component: dropped
        } else if (clean == PATH_CLEAN_DOTDOT && dotdot && (len > floor || rooted)) {
            while (len > floor && path[len - 1] != '/') len--;  // the last component...
            if (len > floor) len--;                             // ...and the slash before it
        } else {
            if (len && path[len - 1] != '/') path[len++] = '/';
            memmove(path + len, in, m);  // may overwrite `in`: nothing reads it below
            len += m;
            if (clean == PATH_CLEAN_DOTDOT && dotdot) floor = len;  // a leading ".." of a relative path
        }
        in += m;
    }
    if (!len) path[len++] = '.';
    path[len] = '\0';
}

char *path_stem(const char *path) {
    const char *base = strrchr(path, '/');
    char *name = yp_strdup(base ? base + 1 : path);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
    return name;
}

char *path_dirname(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *slash = memrchr(path, '/', n);
    if (!slash) return yp_strdup(".");
    if (slash == path) return yp_strdup("/");
    n = (size_t)(slash - path);
    char *dir = yp_malloc(n + 1);
    memcpy(dir, path, n);
    dir[n] = '\0';
    return dir;
}

bool path_format(char *out, size_t cap, Error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) return error_set(err, "%.200s...: path too long", out);
    return true;
}

bool path_increment(char *out, size_t cap, const char *base, Error *err) {
    struct stat st;
    bool ok = path_format(out, cap, err, "%s", base);
    for (int k = 2; ok && stat(out, &st) == 0; k++) ok = path_format(out, cap, err, "%s%d", base, k);
    return ok;
}
