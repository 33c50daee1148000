// File-system helpers for results that must survive a crash: checkpoints, manifests, metrics.
//
// A file is written to "<path>.tmp-<pid>", flushed and fsync'ed, then renamed over <path> and the
// parent directory fsync'ed, so <path> is always either the old complete file or the new one.
// A directory is written the same way as "<dir>.tmp-<pid>/" and swapped in at commit.
//
// Every failure is a user-level I/O error ("path: what failed: strerror") returned in an Error;
// nothing here aborts except on allocation failure.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "framework/core/error.h"

// Creates `path` and any missing parents (mode 0777 before the umask). Existing directories are
// fine; an existing non-directory is an error.
bool fs_mkdir_p(const char *path, Error *err);

// Removes `path` and, when it is a directory, everything below it (symbolic links are removed,
// never followed). A missing path is not an error.
bool fs_remove_tree(const char *path, Error *err);

// What a file read whole holds: each kind has a size cap, far above any real file of that kind, so
// that a file that is not what it claims (a runaway log, a disk image named .yaml) fails with a
// message instead of exhausting memory. Tables indexed by it are sized FS_READ_KIND_COUNT.
typedef enum FsReadKind {
    FS_READ_YAML,         // model, experiment, dataset, study YAMLs and checkpoint manifests
    FS_READ_IMAGE_LIST,   // a dataset's .txt list of image paths
    FS_READ_LABELS,       // one image's label file
    FS_READ_IMAGE,        // one PNG or JPEG
    FS_READ_SAFETENSORS,  // weights, checkpoints' stage files
    FS_READ_CSV,          // profiles, study tables
    FS_READ_TEXT,         // small text the program wrote itself (study fingerprints, logs)
    FS_READ_KIND_COUNT
} FsReadKind;

// Reads the whole regular file at `path` into *bytes (NUL-terminated: text can be used as a string;
// the caller frees it) and its length into *n_bytes. A directory, a device, a FIFO or a socket is
// refused without blocking, and so is a file larger than `kind`'s cap. On failure returns false
// with nothing allocated, errno set (ENOENT for a missing file, EISDIR, EINVAL for a file that is not
// regular, EFBIG over the cap) and err holding "path: reason" (e.g. "path: is a directory",
// "path: larger than the 16 MiB limit for YAML files").
bool fs_read_file(const char *path, FsReadKind kind, char **bytes, size_t *n_bytes, Error *err);

// ---- one file ----------------------------------------------------------------------------------

typedef struct FsAtomicFile FsAtomicFile;

// Opens "<path>.tmp-<pid>" for writing (binary). The caller writes through
// fs_atomic_file_stream() and then either commits or aborts; both free *out. Refuses when <path>
// exists and is not a regular file (a device, a FIFO, a folder: never replaced by a plain file), and
// first removes the "<path>.tmp-<pid>" of processes that are no longer alive.
bool fs_atomic_file_open(const char *path, FsAtomicFile **out, Error *err);
// The stream to write to; owned by the FsAtomicFile (do not fclose it).
FILE *fs_atomic_file_stream(FsAtomicFile *af);
// Flushes, fsyncs and closes the temporary file, renames it to the final path and fsyncs the
// directory. On any failure the temporary file is removed and the old file (if any) is untouched.
// Frees af in every case.
bool fs_atomic_file_commit(FsAtomicFile *af, Error *err);
// Closes and removes the temporary file; frees af. Accepts NULL.
void fs_atomic_file_abort(FsAtomicFile *af);

// Writes n_bytes from data to `path` atomically (open, write, commit).
bool fs_write_file_atomic(const char *path, const void *data, size_t n_bytes, Error *err);

// ---- a whole directory -------------------------------------------------------------------------

typedef struct FsAtomicDir FsAtomicDir;

// Creates the empty directory "<path>.tmp-<pid>" (removing a stale one left by a crashed process
// with the same id, and those of processes no longer alive); the caller writes files into
// fs_atomic_dir_path() and then commits or aborts. Refuses when <path> exists and is not a directory.
bool fs_atomic_dir_begin(const char *path, FsAtomicDir **out, Error *err);
// The temporary directory to write into; owned by the FsAtomicDir.
const char *fs_atomic_dir_path(const FsAtomicDir *ad);
// Fsyncs every file and directory below the temporary directory, then puts it in place:
// - no old <path>: one rename;
// - an old <path>: the two are exchanged atomically (renameat2 RENAME_EXCHANGE) and the old one,
//   now under the temporary name, is removed. On file systems without exchange the old one is
//   first renamed to "<path>.old-<pid>", the new one renamed to <path>, the old one removed.
// A crash therefore leaves the old or the new complete directory at <path> (in the fallback's
// single window between its two renames, the old complete directory at "<path>.old-<pid>").
// Frees ad in every case; on failure the temporary directory is removed.
bool fs_atomic_dir_commit(FsAtomicDir *ad, Error *err);
// Removes the temporary directory and frees ad. Accepts NULL.
void fs_atomic_dir_abort(FsAtomicDir *ad);
