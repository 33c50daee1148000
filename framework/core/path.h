// Paths as strings: joining, lexical clean-up, the folder holding a path, and formatting into a
// fixed buffer. Nothing here touches the file system (symbolic links are never resolved).
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "framework/core/error.h"

// What path_clean removes, each kind adding to the one before.
typedef enum PathClean {
    PATH_CLEAN_NONE,    // nothing: the path as given
    PATH_CLEAN_DOT,     // "." components and repeated or trailing slashes; an empty result is ".".
                        // ".." stays: without resolving links, "a/b/.." need not be "a"
    PATH_CLEAN_DOTDOT,  // and each "name/.." (lexically); ".." just after the root is dropped and
                        // leading ones of a relative path stay. For paths shown in messages
    PATH_CLEAN_COUNT
} PathClean;

// rel itself when it is absolute or dir is empty, else "dir/rel"; then cleaned as `clean` says
// (PATH_CLEAN_NONE: exactly those characters). Owned by the caller (free).
char *path_join(const char *dir, const char *rel, PathClean clean);

// Cleans path in place (it only shrinks): "a/./b//c/" -> "a/b/c" from PATH_CLEAN_DOT on,
// "/x/a/../b" -> "/x/b" with PATH_CLEAN_DOTDOT.
void path_clean(char *path, PathClean clean);

// The folder holding path: what comes before its last '/' once trailing slashes are dropped; "."
// for a bare name, "/" for a name just below the root. Owned by the caller (free).
char *path_dirname(const char *path);

// The file's name after its last '/' without its last extension ("experiments/default.yaml" ->
// "default"; a leading dot is kept: ".hidden" stays). Owned by the caller (free).
char *path_stem(const char *path);

// Path buffers: a path built from pieces goes into `char path[PATH_MAX]` (the longest path the
// kernel takes, its NUL included) through path_format, which fails clearly instead of truncating.
// Formats like snprintf(out, cap, fmt, ...); when the result does not fit, returns false with
// "<its first 200 characters>...: path too long" in err.
bool path_format(char *out, size_t cap, Error *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

// Ultralytics' increment_path: base itself when nothing exists there, else the first of base2, base3,
// ... that does not exist, into out (path_format's rules). Creates nothing.
bool path_increment(char *out, size_t cap, const char *base, Error *err);
