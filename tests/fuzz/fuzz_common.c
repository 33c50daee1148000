#include "tests/fuzz/fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "framework/core/fsutil.h"
#include "framework/core/path.h"

enum { FUZZ_MAX_FILES = 8 };

static char *scratch_dir;  // owned; set once, by the first fuzz_dir call
static struct {
    char *name, *path;  // owned
} files[FUZZ_MAX_FILES];
static int n_files;

static void remove_scratch(void) {
    Error err;
    if (scratch_dir && !fs_remove_tree(scratch_dir, &err)) fprintf(stderr, "fuzz: %s\n", err.message);
    for (int i = 0; i < n_files; i++) free(files[i].name), free(files[i].path);
    free(scratch_dir);
    scratch_dir = NULL;
}

const char *fuzz_dir(void) {
    if (scratch_dir) return scratch_dir;
    struct stat st;
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *dir = path_join(base, "yolopipe-fuzz-XXXXXX", PATH_CLEAN_NONE);
    if (!mkdtemp(dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    scratch_dir = dir;
    atexit(remove_scratch);
    return scratch_dir;
}

const char *fuzz_file(const char *name) {
    for (int i = 0; i < n_files; i++)
        if (!strcmp(files[i].name, name)) return files[i].path;
    if (n_files == FUZZ_MAX_FILES) abort();
    files[n_files].name = yp_strdup(name);
    files[n_files].path = path_join(fuzz_dir(), name, PATH_CLEAN_NONE);
    return files[n_files++].path;
}

void fuzz_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_check_error(const Error *err) {
    if (!err->message[0]) {
        fprintf(stderr, "fuzz: a call failed without an error message\n");
        abort();
    }
    if (strpbrk(err->message, "\n\r")) {
        fprintf(stderr, "fuzz: an error message is more than one line:\n%s\n", err->message);
        abort();
    }
}
