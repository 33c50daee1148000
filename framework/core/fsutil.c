#include "framework/core/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "framework/core/path.h"

struct FsAtomicFile {
    FILE *f;
    char *path;      // final name
    char *tmp_path;  // "<path>.tmp-<pid>"
};

struct FsAtomicDir {
    char *path;
    char *tmp_path;
};

static bool io_error(Error *err, const char *path, const char *what) {
    return error_set(err, "%s: %s: %s", path, what, strerror(errno));
}

// "<path><suffix><pid>", owned by the caller.
static char *path_with_pid(const char *path, const char *suffix) {
    size_t n = strlen(path) + strlen(suffix) + 24;
    char *s = yp_malloc(n);
    snprintf(s, n, "%s%s%ld", path, suffix, (long)getpid());
    return s;
}

static bool fsync_path(const char *path, int flags, Error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0) return io_error(err, path, "cannot open to sync");
    bool ok = fsync(fd) == 0 || io_error(err, path, "fsync failed");
    close(fd);
    return ok;
}

// Makes a rename or a new entry in the directory holding `path` durable.
static bool fsync_parent(const char *path, Error *err) {
    char *parent = path_dirname(path);
    bool ok = fsync_path(parent, O_DIRECTORY, err);
    free(parent);
    return ok;
}

// The caps of fs_read_file, per kind. None is meant to be reached by a real file: each is a
// hundred times or more the largest such file seen in practice.
static const struct {
    size_t max_bytes;
    const char *what;  // "larger than the N MiB limit for <what>"
} read_limits[FS_READ_KIND_COUNT] = {
    [FS_READ_YAML] = {(size_t)16 << 20, "YAML files"},                // hand-written: kilobytes
    [FS_READ_IMAGE_LIST] = {(size_t)1 << 30, "image lists"},          // 10 million paths
    [FS_READ_LABELS] = {(size_t)1 << 20, "label files"},              // ~25,000 boxes in one image
    [FS_READ_IMAGE] = {(size_t)256 << 20, "images"},                  // an 8K RGBA PNG is ~130 MiB raw
    [FS_READ_SAFETENSORS] = {(size_t)64 << 30, "safetensors files"},  // the largest YOLO checkpoint: ~1 GiB
    [FS_READ_CSV] = {(size_t)1 << 30, "CSV files"},                   // a study of a million points
    [FS_READ_TEXT] = {(size_t)64 << 20, "text files"},
};
_Static_assert(sizeof read_limits / sizeof read_limits[0] == FS_READ_KIND_COUNT, "a cap for every FsReadKind");

// Fails with errno `code` and "path: <fmt...>" in err.
static bool read_failure(Error *err, int code, const char *path, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool read_failure(Error *err, int code, const char *path, const char *fmt, ...) {
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    error_set(err, "%s: %s", path, reason);
    errno = code;
    return false;
}

static bool read_too_large(Error *err, const char *path, FsReadKind kind) {
    size_t mib = read_limits[kind].max_bytes >> 20;
    if (mib >= 1024) return read_failure(err, EFBIG, path, "larger than the %zu GiB limit for %s", mib >> 10, read_limits[kind].what);
    return read_failure(err, EFBIG, path, "larger than the %zu MiB limit for %s", mib, read_limits[kind].what);
}

// Reads fd to its end, up to kind's cap (one more byte means "too large").
static bool read_bounded(int fd, const char *path, FsReadKind kind, size_t size_hint, char **bytes, size_t *n_bytes,
                         Error *err) {
    size_t max_bytes = read_limits[kind].max_bytes;
    if (size_hint > max_bytes) return read_too_large(err, path, kind);
    // fstat's size is only a hint: /proc files say 0, and a file may grow while it is read.
    size_t cap = (size_hint > 65536 ? size_hint : 65536) + 2, len = 0;
    char *buf = yp_malloc(cap);
    for (;;) {
        if (len + 1 >= cap) buf = yp_realloc(buf, cap = cap * 2 < max_bytes + 2 ? cap * 2 : max_bytes + 2);
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int code = errno;
            free(buf);
            return read_failure(err, code, path, "cannot read: %s", strerror(code));
        }
        if (got == 0) break;
        len += (size_t)got;
        if (len > max_bytes) {
            free(buf);
            return read_too_large(err, path, kind);
        }
    }
    buf[len] = '\0';
    *bytes = buf;
    *n_bytes = len;
    return true;
}

bool fs_read_file(const char *path, FsReadKind kind, char **bytes, size_t *n_bytes, Error *err) {
    *bytes = NULL;
    *n_bytes = 0;
    // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int code = errno;
        return read_failure(err, code, path, "cannot open: %s", strerror(code));
    }
    struct stat st;
    bool ok;
    if (fstat(fd, &st) != 0) {
        int code = errno;
        ok = read_failure(err, code, path, "cannot stat: %s", strerror(code));
    } else if (S_ISDIR(st.st_mode)) {
        ok = read_failure(err, EISDIR, path, "is a directory");
    } else if (!S_ISREG(st.st_mode)) {
        ok = read_failure(err, EINVAL, path, "not a regular file (a device, FIFO or socket)");
    } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        int code = errno;
        ok = read_failure(err, code, path, "cannot read: %s", strerror(code));
    } else {
        ok = read_bounded(fd, path, kind, st.st_size > 0 ? (size_t)st.st_size : 0, bytes, n_bytes, err);
    }
    int code = errno;
    close(fd);
    errno = code;
    return ok;
}

bool fs_mkdir_p(const char *path, Error *err) {
    if (!*path) return error_set(err, "cannot create a directory with an empty name");
    char *s = yp_strdup(path);
    bool ok = true;
    // Create each prefix ending before a '/', then the whole path.
    for (char *p = s + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        struct stat st;
        if (mkdir(s, 0777) != 0 && !(errno == EEXIST && stat(s, &st) == 0 && S_ISDIR(st.st_mode))) {
            ok = errno == EEXIST ? error_set(err, "%s: exists and is not a directory", s)
                                 : io_error(err, s, "cannot create directory");
            break;
        }
        *p = saved;
        if (saved == '\0') break;
    }
    free(s);
    return ok;
}

bool fs_remove_tree(const char *path, Error *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT || io_error(err, path, "cannot stat");
    if (!S_ISDIR(st.st_mode)) return unlink(path) == 0 || io_error(err, path, "cannot remove");
    DIR *dir = opendir(path);
    if (!dir) return io_error(err, path, "cannot open directory");
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(dir));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *child = path_join(path, e->d_name, PATH_CLEAN_NONE);
        ok = fs_remove_tree(child, err);
        free(child);
    }
    closedir(dir);
    return ok && (rmdir(path) == 0 || io_error(err, path, "cannot remove directory"));
}

// Fsyncs every regular file and directory below (and including) `path`; links are left alone.
static bool fsync_tree(const char *path, Error *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return io_error(err, path, "cannot stat");
    if (S_ISREG(st.st_mode)) return fsync_path(path, 0, err);
    if (!S_ISDIR(st.st_mode)) return true;
    DIR *dir = opendir(path);
    if (!dir) return io_error(err, path, "cannot open directory");
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(dir));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *child = path_join(path, e->d_name, PATH_CLEAN_NONE);
        ok = fsync_tree(child, err);
        free(child);
    }
    closedir(dir);
    return ok && fsync_path(path, O_DIRECTORY, err);
}

// ---- what an atomic write may replace ----------------------------------------------------------

// Refuses to replace `path` when it exists as something else than `want` (S_IFREG or S_IFDIR):
// renaming over a device node or a FIFO would turn it into a plain file (`export --out /dev/full`
// as root once printed "wrote /dev/full"), and a directory over a file, or the reverse, loses it.
static bool check_replaceable(const char *path, mode_t want, Error *err) {
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT || io_error(err, path, "cannot stat");
    if ((st.st_mode & S_IFMT) == want) return true;
    if (S_ISDIR(st.st_mode)) return error_set(err, "%s: is a directory; give the name of a file to write", path);
    if (want == S_IFDIR) return error_set(err, "%s: exists and is not a directory; refusing to replace it", path);
    return error_set(err, "%s: not a regular file (a device, FIFO or socket); refusing to replace it", path);
}

// Removes "<name>.tmp-<pid>" entries beside `path` whose process is gone (killed mid-write, they
// would pile up with every kill): only that exact pattern, only in path's own directory, never one
// of a live process (kill(pid, 0) tells; EPERM means alive under another user). Best effort: a
// leftover costs disk space, never correctness.
static void remove_stale_temps(const char *path) {
    char *dir = path_dirname(path);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    size_t n_name = strlen(name);
    DIR *d = *name ? opendir(dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, name, n_name) || strncmp(e->d_name + n_name, ".tmp-", 5)) continue;
        const char *pid_text = e->d_name + n_name + 5;
        if (!*pid_text || strlen(pid_text) > 9 || strspn(pid_text, "0123456789") != strlen(pid_text)) continue;
        long pid = strtol(pid_text, NULL, 10);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *stale = path_join(dir, e->d_name, PATH_CLEAN_NONE);
        Error ignored;
        fs_remove_tree(stale, &ignored);
        free(stale);
    }
    if (d) closedir(d);
    free(dir);
}

// ---- one file ----------------------------------------------------------------------------------

static void atomic_file_free(FsAtomicFile *af) {
    free(af->path);
    free(af->tmp_path);
    free(af);
}

bool fs_atomic_file_open(const char *path, FsAtomicFile **out, Error *err) {
    *out = NULL;
    if (!check_replaceable(path, S_IFREG, err)) return false;
    remove_stale_temps(path);
    FsAtomicFile *af = yp_calloc(1, sizeof *af);
    af->path = yp_strdup(path);
    af->tmp_path = path_with_pid(path, ".tmp-");
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        io_error(err, af->tmp_path, "cannot create");
        atomic_file_free(af);
        return false;
    }
    *out = af;
    return true;
}

FILE *fs_atomic_file_stream(FsAtomicFile *af) { return af->f; }

bool fs_atomic_file_commit(FsAtomicFile *af, Error *err) {
    bool ok = true;
    if (ferror(af->f) || fflush(af->f) != 0) ok = io_error(err, af->tmp_path, "write failed");
    else if (fsync(fileno(af->f)) != 0) ok = io_error(err, af->tmp_path, "fsync failed");
    if (fclose(af->f) != 0 && ok) ok = io_error(err, af->tmp_path, "close failed");
    if (ok && rename(af->tmp_path, af->path) != 0) ok = io_error(err, af->path, "cannot rename the temporary file into place");
    if (ok) ok = fsync_parent(af->path, err);
    else unlink(af->tmp_path);
    atomic_file_free(af);
    return ok;
}

void fs_atomic_file_abort(FsAtomicFile *af) {
    if (!af) return;
    fclose(af->f);
    unlink(af->tmp_path);
    atomic_file_free(af);
}

bool fs_write_file_atomic(const char *path, const void *data, size_t n_bytes, Error *err) {
    FsAtomicFile *af;
    if (!fs_atomic_file_open(path, &af, err)) return false;
    fwrite(data, 1, n_bytes, fs_atomic_file_stream(af));  // a short write shows in ferror at commit
    return fs_atomic_file_commit(af, err);
}

// ---- a whole directory -------------------------------------------------------------------------

static void atomic_dir_free(FsAtomicDir *ad) {
    free(ad->path);
    free(ad->tmp_path);
    free(ad);
}

bool fs_atomic_dir_begin(const char *path, FsAtomicDir **out, Error *err) {
    *out = NULL;
    if (!check_replaceable(path, S_IFDIR, err)) return false;
    remove_stale_temps(path);
    FsAtomicDir *ad = yp_calloc(1, sizeof *ad);
    ad->path = yp_strdup(path);
    ad->tmp_path = path_with_pid(path, ".tmp-");
    if (!fs_remove_tree(ad->tmp_path, err) || (mkdir(ad->tmp_path, 0777) != 0 && !io_error(err, ad->tmp_path, "cannot create directory"))) {
        atomic_dir_free(ad);
        return false;
    }
    *out = ad;
    return true;
}

const char *fs_atomic_dir_path(const FsAtomicDir *ad) { return ad->tmp_path; }

// Replaces the existing <path> with the temporary directory; see fs_atomic_dir_commit.
static bool atomic_dir_replace(FsAtomicDir *ad, Error *err) {
    if (renameat2(AT_FDCWD, ad->tmp_path, AT_FDCWD, ad->path, RENAME_EXCHANGE) == 0) {
        // The old directory now has the temporary name.
        return fsync_parent(ad->path, err) && fs_remove_tree(ad->tmp_path, err) && fsync_parent(ad->path, err);
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return io_error(err, ad->path, "cannot exchange with the new directory");
    char *aside = path_with_pid(ad->path, ".old-");
    bool ok = fs_remove_tree(aside, err);
    if (ok && rename(ad->path, aside) != 0) ok = io_error(err, ad->path, "cannot move the old directory aside");
    if (ok && rename(ad->tmp_path, ad->path) != 0) {
        ok = io_error(err, ad->path, "cannot rename the new directory into place");
        rename(aside, ad->path);  // put the old one back
    }
    ok = ok && fsync_parent(ad->path, err) && fs_remove_tree(aside, err) && fsync_parent(ad->path, err);
    free(aside);
    return ok;
}

bool fs_atomic_dir_commit(FsAtomicDir *ad, Error *err) {
    bool ok = fsync_tree(ad->tmp_path, err);
    if (ok) {
        struct stat st;
        if (lstat(ad->path, &st) == 0) ok = atomic_dir_replace(ad, err);
        else if (errno != ENOENT) ok = io_error(err, ad->path, "cannot stat");
        else if (rename(ad->tmp_path, ad->path) != 0) ok = io_error(err, ad->path, "cannot rename the new directory into place");
        else ok = fsync_parent(ad->path, err);
    }
    if (!ok) {
        Error ignored;
        fs_remove_tree(ad->tmp_path, &ignored);
    }
    atomic_dir_free(ad);
    return ok;
}

void fs_atomic_dir_abort(FsAtomicDir *ad) {
    if (!ad) return;
    Error ignored;
    fs_remove_tree(ad->tmp_path, &ignored);
    atomic_dir_free(ad);
}
