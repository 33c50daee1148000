#include "framework/core/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

bool fs_read_file(const char *path, char **bytes, size_t *n_bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t cap = 1 << 16, len = 0;
    char *buf = yp_malloc(cap);
    for (;;) {
        if (len + 1 >= cap) buf = yp_realloc(buf, cap *= 2);
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        errno = EIO;
        return false;
    }
    buf[len] = '\0';
    *bytes = buf;
    *n_bytes = len;
    return true;
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

// ---- one file ----------------------------------------------------------------------------------

static void atomic_file_free(FsAtomicFile *af) {
    free(af->path);
    free(af->tmp_path);
    free(af);
}

bool fs_atomic_file_open(const char *path, FsAtomicFile **out, Error *err) {
    *out = NULL;
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
