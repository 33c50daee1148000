#include "framework/data/dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "framework/core/fsutil.h"
#include "framework/core/path.h"
#include "framework/core/yaml_doc.h"
#include "framework/data/image_io.h"

const char *const dataset_split_names[DATASET_SPLIT_COUNT] = {"train", "val", "test"};

const char *const dataset_skip_names[DATASET_SKIP_COUNT] = {
    "unreadable image",   "image under 10 pixels", "unreadable label file", "wrong field count",
    "label not a number", "bad class id",          "coordinates outside [0, 1]",
};
_Static_assert(sizeof dataset_skip_names / sizeof *dataset_skip_names == DATASET_SKIP_COUNT, "one name per reason");

// Ultralytics' IMG_FORMATS: these are listed; only PNG and JPEG decode, the others are skipped as unreadable.
static const char *const image_extensions[] = {"avif", "bmp", "dng",  "heic", "heif", "jp2", "jpeg",
                                               "jpg",  "mpo", "png",  "tif",  "tiff", "webp"};
enum { WALK_DEPTH_MAX = 32 };

// ---- paths -------------------------------------------------------------------------------------------

typedef struct StrList {
    char **items;
    int64_t n, cap;
} StrList;

static void strlist_push(StrList *list, char *owned) {
    if (list->n == list->cap) list->items = yp_realloc(list->items, (size_t)(list->cap = list->cap ? 2 * list->cap : 16) * sizeof *list->items);
    list->items[list->n++] = owned;
}

static void strlist_free(StrList *list) {
    for (int64_t i = 0; i < list->n; i++) free(list->items[i]);
    free(list->items);
    *list = (StrList){0};
}

static bool path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool path_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool path_is_image(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (!dot) return false;
    for (size_t i = 0; i < sizeof image_extensions / sizeof *image_extensions; i++)
        if (!strcasecmp(dot + 1, image_extensions[i])) return true;
    return false;
}

// Ultralytics' img2label_paths: the last "/images/" becomes "/labels/", the extension ".txt". A
// relative path that starts with "images/" counts as well.
static char *label_path_for(const char *image_path) {
    size_t n = strlen(image_path);
    char *out = yp_malloc(n + 8);
    memcpy(out, image_path, n + 1);
    char *at = NULL;
    for (char *p = strstr(out, "/images/"); p; p = strstr(p + 1, "/images/")) at = p + 1;
    if (!at && !strncmp(out, "images/", 7)) at = out;
    if (at) memcpy(at, "labels", 6);
    char *dot = strrchr(out, '.');
    char *slash = strrchr(out, '/');
    if (dot && (!slash || dot > slash)) *dot = '\0';
    strcat(out, ".txt");
    return out;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Lists image files under dir recursively, skipping hidden entries as Ultralytics' glob does.
static bool walk_images(const char *dir, int depth, StrList *out, Error *err) {
    if (depth > WALK_DEPTH_MAX)
        return error_set(err, "%s: folders nested deeper than %d levels (a symbolic-link loop?)", dir, WALK_DEPTH_MAX);
    DIR *d = opendir(dir);
    if (!d) return error_set(err, "%s: cannot list the folder: %s", dir, strerror(errno));
    StrList names = {0};
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') strlist_push(&names, yp_strdup(e->d_name));
    closedir(d);
    if (names.n) qsort(names.items, (size_t)names.n, sizeof *names.items, compare_strings);  // items is NULL when empty
    bool ok = true;
    for (int64_t i = 0; ok && i < names.n; i++) {
        char *path = path_join(dir, names.items[i], PATH_CLEAN_DOT);
        if (path_is_dir(path)) {
            ok = walk_images(path, depth + 1, out, err);
            free(path);
        } else if (path_is_image(path)) {
            strlist_push(out, path);
        } else {
            free(path);
        }
    }
    strlist_free(&names);
    return ok;
}

// Reads a whole text file, without a UTF-8 byte-order mark, and its length in bytes (a NUL byte
// inside makes it longer than strlen). NULL (err and errno set) when it cannot be read.
static char *read_text(const char *path, FsReadKind kind, size_t *n_bytes, Error *err) {
    char *buf;
    if (!fs_read_file(path, kind, &buf, n_bytes, err)) return NULL;
    if (*n_bytes >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) memmove(buf, buf + 3, (*n_bytes -= 3) + 1);
    return buf;
}

// Next line of *cursor (split at \n, \r\n or \r), trimmed; NULL at the end. Modifies the buffer.
static char *next_line(char **cursor) {
    char *line = *cursor;
    if (!*line) return NULL;
    char *end = line + strcspn(line, "\r\n");
    *cursor = end + (*end == '\r' && end[1] == '\n' ? 2 : *end ? 1 : 0);
    *end = '\0';
    while (isspace((unsigned char)*line)) line++;
    for (char *t = line + strlen(line); t > line && isspace((unsigned char)t[-1]);) *--t = '\0';
    return line;
}

// ---- opening -----------------------------------------------------------------------------------------

static void source_free(DatasetSource *src) {
    for (int64_t i = 0; i < src->n_images; i++) free(src->image_paths[i]);
    free(src->image_paths);
    free(src->classes);
    free(src->where);
    *src = (DatasetSource){0};
}

void dataset_destroy(Dataset *ds) {
    if (!ds) return;
    free(ds->root);
    for (int i = 0; i < ds->nc; i++) free(ds->names[i]);
    free(ds->names);
    for (int s = 0; s < DATASET_SPLIT_COUNT; s++) source_free(&ds->sources[s]);
    free(ds);
}

static char *format_where(YamlDoc *yd, const yaml_node_t *node) {
    char buf[1200];
    snprintf(buf, sizeof buf, "%s:%d:%d", yd->path, yaml_node_line(node), yaml_node_col(node));
    return yp_strdup(buf);
}

// The images under a folder or in a .txt list, appended to out. A path that does not exist fails with
// errno ENOENT and err empty (the caller says what was looked for); other failures fill err.
static bool list_images(const char *path, StrList *out, Error *err) {
    if (path_is_dir(path)) return walk_images(path, 0, out, err);
    size_t n_bytes;
    char *buf = read_text(path, FS_READ_IMAGE_LIST, &n_bytes, err);
    if (!buf) {
        if (errno == ENOENT) *err = (Error){0};
        return false;
    }
    char *dir = path_dirname(path), *cursor = buf;
    for (char *line; (line = next_line(&cursor));)
        if (*line && path_is_image(line)) strlist_push(out, path_join(dir, line, PATH_CLEAN_DOT));
    free(dir);
    free(buf);
    return true;
}

bool dataset_list_images(const char *path, int64_t *n_paths, char ***paths, Error *err) {
    StrList list = {.items = *paths, .n = *n_paths, .cap = *n_paths};
    errno = 0;
    bool ok = list_images(path, &list, err);
    if (!ok && !err->message[0]) error_set(err, "%s: no such file or folder", path);
    *paths = list.items;
    *n_paths = list.n;
    return ok;
}

// Adds the images that one entry of train/val/test names (a folder or a .txt list) to out.
static bool list_entry(YamlDoc *yd, const yaml_node_t *node, const char *root, const char *split, StrList *out,
                       Error *err) {
    const char *text;
    if (!yaml_node_string(yd, node, split, &text, err)) return false;
    char *path = path_join(root, text, PATH_CLEAN_DOT);
    Error inner = {0};
    bool ok = list_images(path, out, &inner);
    if (!ok && !inner.message[0])
        yaml_doc_error_at(yd, node, err, "%s: '%s' does not exist (no folder or image list at %s)", split, text, path);
    else if (!ok)
        yaml_doc_error_at(yd, node, err, "%s: %s", split, inner.message);
    free(path);
    return ok;
}

static bool open_detect_split(YamlDoc *yd, const yaml_node_t *value, const char *root, DatasetSplitId id,
                              DatasetSource *src, Error *err) {
    const char *split = dataset_split_names[id];
    StrList images = {0};
    bool ok = true;
    if (value->type == YAML_SEQUENCE_NODE) {
        for (int i = 0; ok && i < yaml_seq_len(value); i++) ok = list_entry(yd, yaml_seq_at(yd, value, i), root, split, &images, err);
    } else {
        ok = list_entry(yd, value, root, split, &images, err);
    }
    if (ok && images.n == 0)
        ok = yaml_doc_error_at(yd, value, err, "%s: no images found (looked for .png, .jpg, .jpeg and Ultralytics' other image extensions)", split);
    if (!ok) {
        strlist_free(&images);
        return false;
    }
    qsort(images.items, (size_t)images.n, sizeof *images.items, compare_strings);
    *src = (DatasetSource){.present = true, .where = format_where(yd, value), .n_images = images.n, .image_paths = images.items};
    return true;
}

// names: a list, or a mapping {0: a, 1: b} whose ids are exactly 0 to n-1.
static bool read_names(YamlDoc *yd, const yaml_node_t *node, Dataset *ds, Error *err) {
    char found[160];
    if (node->type == YAML_SEQUENCE_NODE) {
        int n = yaml_seq_len(node);
        if (n == 0) return yaml_doc_error_at(yd, node, err, "names is empty: list one name per class");
        ds->names = yp_calloc((size_t)n, sizeof *ds->names);
        for (int i = 0; i < n; i++) {
            const char *text;
            if (!yaml_node_string(yd, yaml_seq_at(yd, node, i), "a class name", &text, err)) return false;
            ds->names[ds->nc++] = yp_strdup(text);
        }
        return true;
    }
    if (node->type != YAML_MAPPING_NODE)
        return yaml_doc_error_at(yd, node, err, "names must be a list or a mapping {id: name}, found %s",
                                 yaml_node_describe_found(node, found, sizeof found));
    int n = (int)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (n == 0) return yaml_doc_error_at(yd, node, err, "names is empty: give one name per class");
    ds->names = yp_calloc((size_t)n, sizeof *ds->names);
    ds->nc = n;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_doc_node(yd, p->key);
        int64_t id;
        const char *text;
        if (!yaml_node_int(yd, key, "a class id", &id, err)) return false;
        if (id < 0 || id >= n)
            return yaml_doc_error_at(yd, key, err, "class id %lld is out of range: the %d names must be numbered 0 to %d",
                                     (long long)id, n, n - 1);
        if (ds->names[id])
            return yaml_doc_error_at(yd, key, err, "class id %lld is given twice", (long long)id);
        if (!yaml_node_string(yd, yaml_doc_node(yd, p->value), "a class name", &text, err)) return false;
        ds->names[id] = yp_strdup(text);
    }
    return true;
}

static bool read_classes(YamlDoc *yd, const yaml_node_t *map, Dataset *ds, Error *err) {
    yaml_node_t *names = yaml_map_get(yd, map, "names"), *nc_node = yaml_map_get(yd, map, "nc");
    if (names && yaml_node_is_plain(names) && yaml_text_is_null(yaml_node_text(names))) names = NULL;
    if (names && !read_names(yd, names, ds, err)) return false;
    if (!nc_node) {
        if (!names) return yaml_doc_error_at(yd, map, err, "the dataset needs 'names:' (one name per class) or 'nc:'");
        return true;
    }
    int64_t nc;
    if (!yaml_node_int(yd, nc_node, "nc", &nc, err)) return false;
    if (nc < 1 || nc > 1000000) return yaml_doc_error_at(yd, nc_node, err, "nc must be between 1 and 1000000, found %lld", (long long)nc);
    if (names && nc != ds->nc)
        return yaml_doc_error_at(yd, nc_node, err, "nc: %lld does not match names, which has %d entries (line %d)",
                                 (long long)nc, ds->nc, yaml_node_line(names));
    if (!names) {
        ds->names = yp_calloc((size_t)nc, sizeof *ds->names);
        for (ds->nc = 0; ds->nc < nc; ds->nc++) {
            char name[32];
            snprintf(name, sizeof name, "class_%d", ds->nc);
            ds->names[ds->nc] = yp_strdup(name);
        }
    }
    return true;
}

static bool open_detect(const char *data, Dataset *ds, Error *err) {
    YamlDoc *yd;
    if (!yaml_doc_load(data, &yd, err)) return false;
    yaml_node_t *map = yaml_doc_root(yd);
    char found[160];
    bool ok = true;
    if (map->type != YAML_MAPPING_NODE) {
        ok = yaml_doc_error_at(yd, map, err, "a dataset YAML is a mapping with path, train, val and names; found %s",
                               yaml_node_describe_found(map, found, sizeof found));
    }
    char *yaml_dir = path_dirname(data);
    if (ok) {
        yaml_node_t *path = yaml_map_get(yd, map, "path");
        const char *text = NULL;
        if (path && !(yaml_node_is_plain(path) && yaml_text_is_null(yaml_node_text(path))))
            ok = yaml_node_string(yd, path, "path", &text, err);
        if (ok) ds->root = path_join(yaml_dir, text ? text : ".", PATH_CLEAN_DOT);
        if (ok && !path_is_dir(ds->root))
            ok = yaml_doc_error_at(yd, path, err, "path: the dataset folder %s does not exist", ds->root);
    }
    ok = ok && read_classes(yd, map, ds, err);
    for (int s = 0; ok && s < DATASET_SPLIT_COUNT; s++) {
        yaml_node_t *value = yaml_map_get(yd, map, dataset_split_names[s]);
        bool empty = !value || (yaml_node_is_plain(value) && yaml_text_is_null(yaml_node_text(value)));
        if (empty && s == DATASET_SPLIT_TEST) continue;
        if (empty)
            ok = yaml_doc_error_at(yd, value ? value : map, err, "%s: missing; give the folder or image list of the %s images",
                                   dataset_split_names[s], dataset_split_names[s]);
        else
            ok = open_detect_split(yd, value, ds->root, (DatasetSplitId)s, &ds->sources[s], err);
    }
    free(yaml_dir);
    yaml_doc_destroy(yd);
    return ok;
}

typedef struct ClassImage {
    char *path;
    int32_t cls;
} ClassImage;

static int compare_class_images(const void *a, const void *b) {
    return strcmp(((const ClassImage *)a)->path, ((const ClassImage *)b)->path);
}

// Sorted visible sub-folders of dir.
static bool list_subfolders(const char *dir, StrList *out, Error *err) {
    DIR *d = opendir(dir);
    if (!d) return error_set(err, "%s: cannot list the folder: %s", dir, strerror(errno));
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *path = path_join(dir, e->d_name, PATH_CLEAN_DOT);
        if (path_is_dir(path)) strlist_push(out, yp_strdup(e->d_name));
        free(path);
    }
    closedir(d);
    qsort(out->items, (size_t)out->n, sizeof *out->items, compare_strings);
    return true;
}

static bool open_classify_split(const Dataset *ds, DatasetSplitId id, DatasetSource *src, Error *err) {
    char *dir = path_join(ds->root, dataset_split_names[id], PATH_CLEAN_DOT);
    StrList folders = {0};
    bool ok = list_subfolders(dir, &folders, err);
    ClassImage *images = NULL;
    int64_t n = 0, cap = 0;
    for (int64_t f = 0; ok && f < folders.n; f++) {
        int32_t cls = -1;
        for (int c = 0; c < ds->nc; c++)
            if (!strcmp(ds->names[c], folders.items[f])) cls = c;
        if (cls < 0) {
            ok = error_set(err, "%s/%s: not a class of train/ (a %s class folder must also be in train/)", dir,
                           folders.items[f], dataset_split_names[id]);
            break;
        }
        StrList files = {0};
        char *class_dir = path_join(dir, folders.items[f], PATH_CLEAN_DOT);
        ok = walk_images(class_dir, 0, &files, err);
        free(class_dir);
        for (int64_t i = 0; i < files.n; i++) {
            if (n == cap) images = yp_realloc(images, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *images);
            images[n++] = (ClassImage){.path = files.items[i], .cls = cls};
        }
        free(files.items);
    }
    strlist_free(&folders);
    if (ok && n == 0) ok = error_set(err, "%s: no images found in its class folders", dir);
    if (!ok) {
        for (int64_t i = 0; i < n; i++) free(images[i].path);
        free(images);
        free(dir);
        return false;
    }
    qsort(images, (size_t)n, sizeof *images, compare_class_images);
    *src = (DatasetSource){.present = true, .where = dir, .n_images = n};
    src->image_paths = yp_malloc((size_t)n * sizeof *src->image_paths);
    src->classes = yp_malloc((size_t)n * sizeof *src->classes);
    for (int64_t i = 0; i < n; i++) {
        src->image_paths[i] = images[i].path;
        src->classes[i] = images[i].cls;
    }
    free(images);
    return true;
}

static bool open_classify(const char *data, Dataset *ds, Error *err) {
    if (!path_is_dir(data)) {
        if (path_is_file(data))
            return error_set(err, "%s: classification data is a folder with train/ and val/ class folders, not a file", data);
        return error_set(err, "%s: no such folder (classification data is a folder with train/ and val/ class folders)", data);
    }
    ds->root = path_join(data, ".", PATH_CLEAN_DOT);
    char *train = path_join(ds->root, "train", PATH_CLEAN_DOT);
    StrList classes = {0};
    bool ok = path_is_dir(train) ? list_subfolders(train, &classes, err)
                                 : error_set(err, "%s: no such folder: classification data needs train/<class>/ folders of images", train);
    if (ok && classes.n == 0) ok = error_set(err, "%s: no class folders (train/<class>/ images)", train);
    free(train);
    if (!ok) {
        strlist_free(&classes);
        return false;
    }
    ds->nc = (int)classes.n;
    ds->names = classes.items;
    for (int s = 0; ok && s < DATASET_SPLIT_COUNT; s++) {
        char *dir = path_join(ds->root, dataset_split_names[s], PATH_CLEAN_DOT);
        bool exists = path_is_dir(dir);
        free(dir);
        if (!exists && s == DATASET_SPLIT_TEST) continue;
        ok = exists ? open_classify_split(ds, (DatasetSplitId)s, &ds->sources[s], err)
                    : error_set(err, "%s: no %s/ folder (classification data needs train/ and val/ class folders)", data,
                                dataset_split_names[s]);
    }
    return ok;
}

bool dataset_open(const char *data, DatasetTask task, Dataset **out, Error *err) {
    YP_CHECK(task >= 0 && task < DATASET_TASK_COUNT);
    Dataset *ds = yp_calloc(1, sizeof *ds);
    ds->task = task;
    bool ok = task == DATASET_TASK_DETECT ? open_detect(data, ds, err) : open_classify(data, ds, err);
    if (!ok) {
        dataset_destroy(ds);
        ds = NULL;
    }
    *out = ds;
    return ok;
}

// ---- scanning ----------------------------------------------------------------------------------------

typedef struct ScanResult {
    DatasetSkip skip;  // DATASET_SKIP_COUNT when the image is kept
    char note[DATASET_NOTE_BYTES];
    int width, height;
    bool unlabelled;
    int64_t n_boxes, n_duplicates;
    DatasetBox *boxes;  // owned until merged
} ScanResult;

static DatasetSkip scan_reject(ScanResult *r, DatasetSkip skip, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static DatasetSkip scan_reject(ScanResult *r, DatasetSkip skip, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note, sizeof r->note, fmt, ap);
    va_end(ap);
    return r->skip = skip;
}

// A label number as Python's float() reads it: decimal only (no hex, no inf or nan), the whole field.
static bool parse_label_number(const char *field, float *out) {
    const char *p = field + (*field == '+' || *field == '-');
    if (!(isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1])))) return false;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) return false;
    char *end;
    errno = 0;
    double v = strtod(field, &end);
    if (*end || !isfinite(v)) return false;
    *out = (float)v;  // Ultralytics holds labels as float32
    return true;
}

static int compare_boxes(const void *a, const void *b) {
    const DatasetBox *x = a, *y = b;
    const float kx[5] = {(float)x->cls, x->cx, x->cy, x->w, x->h}, ky[5] = {(float)y->cls, y->cx, y->cy, y->w, y->h};
    for (int i = 0; i < 5; i++)
        if (kx[i] != ky[i]) return kx[i] < ky[i] ? -1 : 1;
    return 0;
}

// Ultralytics drops repeated rows with np.unique, which also sorts them; rows stay in file order when
// there is no repeat.
static void drop_duplicate_boxes(ScanResult *r) {
    if (r->n_boxes < 2) return;
    DatasetBox *sorted = yp_malloc((size_t)r->n_boxes * sizeof *sorted);
    memcpy(sorted, r->boxes, (size_t)r->n_boxes * sizeof *sorted);
    qsort(sorted, (size_t)r->n_boxes, sizeof *sorted, compare_boxes);
    int64_t n = 1;
    for (int64_t i = 1; i < r->n_boxes; i++)
        if (compare_boxes(&sorted[i], &sorted[n - 1])) sorted[n++] = sorted[i];
    if (n < r->n_boxes) {
        r->n_duplicates = r->n_boxes - n;
        r->n_boxes = n;
        free(r->boxes);
        r->boxes = sorted;
    } else {
        free(sorted);
    }
}

static DatasetSkip scan_labels(const char *label_path, int nc, ScanResult *r) {
    Error why;
    size_t n_bytes;
    char *text = read_text(label_path, FS_READ_LABELS, &n_bytes, &why);
    if (!text && (errno == ENOENT || errno == ENOTDIR)) {
        r->unlabelled = true;
        return DATASET_SKIP_COUNT;
    }
    // A device, a folder or an oversized file under the label's name is a broken label, not a missing one.
    if (!text) return scan_reject(r, DATASET_SKIP_LABEL_UNREADABLE, "%s", why.message);
    const char *nul = memchr(text, '\0', n_bytes);
    if (nul) {
        int line = 1;
        for (const char *c = text; c < nul; c++) line += *c == '\n';
        free(text);
        // The line splitter would stop at it and drop the rest of the file without a word.
        return scan_reject(r, DATASET_SKIP_LABEL_UNREADABLE, "%s:%d: a NUL byte: a label file is text", label_path, line);
    }
    static const char *const field_names[5] = {"class", "cx", "cy", "w", "h"};
    int64_t cap = 0;
    char *cursor = text;
    int line_no = 0;
    DatasetSkip skip = DATASET_SKIP_COUNT;
    for (char *line; skip == DATASET_SKIP_COUNT && (line = next_line(&cursor));) {
        line_no++;
        if (!*line) continue;
        char *fields[6];
        int n_fields = 0;
        char *save;
        for (char *tok = strtok_r(line, " \t\v\f", &save); tok; tok = strtok_r(NULL, " \t\v\f", &save))
            if (n_fields++ < 6) fields[n_fields - 1] = tok;
        if (n_fields != 5) {
            skip = scan_reject(r, DATASET_SKIP_LABEL_FIELDS, "%s:%d: %d field%s, expected 5 (class cx cy w h)", label_path,
                               line_no, n_fields, n_fields == 1 ? "" : "s");
            break;
        }
        float v[5];
        for (int i = 0; i < 5 && skip == DATASET_SKIP_COUNT; i++)
            if (!parse_label_number(fields[i], &v[i]))
                skip = scan_reject(r, DATASET_SKIP_LABEL_NUMBER, "%s:%d: %s '%.40s' is not a number", label_path, line_no,
                                   field_names[i], fields[i]);
        if (skip != DATASET_SKIP_COUNT) break;
        if (v[0] != floorf(v[0])) {
            skip = scan_reject(r, DATASET_SKIP_LABEL_CLASS, "%s:%d: class %s is not an integer", label_path, line_no, fields[0]);
        } else if (v[0] < 0 || v[0] >= (float)nc) {
            skip = scan_reject(r, DATASET_SKIP_LABEL_CLASS, "%s:%d: class %s is out of range: the dataset has %d class%s (0 to %d)",
                               label_path, line_no, fields[0], nc, nc == 1 ? "" : "es", nc - 1);
        }
        // Ultralytics' tolerance: up to 1.01, and centres down to -0.01.
        for (int i = 1; i < 5 && skip == DATASET_SKIP_COUNT; i++)
            if (v[i] > 1.01f || v[i] < (i <= 2 ? -0.01f : 0.0f))
                skip = scan_reject(r, DATASET_SKIP_LABEL_COORDS, "%s:%d: %s %s is outside [0, 1] (coordinates are normalised)",
                                   label_path, line_no, field_names[i], fields[i]);
        if (skip != DATASET_SKIP_COUNT) break;
        if (r->n_boxes == cap) r->boxes = yp_realloc(r->boxes, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *r->boxes);
        r->boxes[r->n_boxes++] = (DatasetBox){.cls = (int32_t)v[0], .cx = v[1], .cy = v[2], .w = v[3], .h = v[4]};
    }
    free(text);
    if (skip == DATASET_SKIP_COUNT) drop_duplicate_boxes(r);
    return skip;
}

static void scan_one(const Dataset *ds, const DatasetSource *src, int64_t i, ScanResult *r) {
    *r = (ScanResult){.skip = DATASET_SKIP_COUNT};
    const char *path = src->image_paths[i];
    Image im;
    Error err = {0};
    if (!image_read(path, &im, &err)) {
        scan_reject(r, DATASET_SKIP_IMAGE_UNREADABLE, "%s", err.message);
        return;
    }
    r->width = im.width;
    r->height = im.height;
    image_free(&im);
    if (r->width < 10 || r->height < 10) {
        scan_reject(r, DATASET_SKIP_IMAGE_TOO_SMALL, "%s: image size %dx%d is under 10 pixels", path, r->width, r->height);
        return;
    }
    if (ds->task == DATASET_TASK_DETECT) {
        char *label_path = label_path_for(path);
        scan_labels(label_path, ds->nc, r);
        free(label_path);
    }
    if (r->skip != DATASET_SKIP_COUNT) {
        free(r->boxes);
        r->boxes = NULL;
        r->n_boxes = r->n_duplicates = 0;
    }
}

typedef struct ScanJob {
    const Dataset *ds;
    const DatasetSource *src;
    ScanResult *results;
    atomic_int_fast64_t next;
} ScanJob;

static void *scan_worker(void *arg) {
    ScanJob *job = arg;
    for (int64_t i; (i = atomic_fetch_add(&job->next, 1)) < job->src->n_images;) scan_one(job->ds, job->src, i, &job->results[i]);
    return NULL;
}

int64_t dataset_split_skipped(const DatasetSplit *split) {
    int64_t n = 0;
    for (int k = 0; k < DATASET_SKIP_COUNT; k++) n += split->n_skipped[k];
    return n;
}

static void merge_results(const DatasetSource *src, ScanResult *results, DatasetSplit *split) {
    int64_t n_kept = 0, n_boxes = 0;
    for (int64_t i = 0; i < src->n_images; i++) {
        n_kept += results[i].skip == DATASET_SKIP_COUNT;
        n_boxes += results[i].n_boxes;
    }
    split->samples = yp_calloc((size_t)n_kept, sizeof *split->samples);
    split->boxes = yp_calloc((size_t)n_boxes, sizeof *split->boxes);
    for (int64_t i = 0; i < src->n_images; i++) {
        ScanResult *r = &results[i];
        if (r->skip != DATASET_SKIP_COUNT) {
            split->n_skipped[r->skip]++;
            if (split->n_notes < DATASET_NOTES_MAX) snprintf(split->notes[split->n_notes++], DATASET_NOTE_BYTES, "%s", r->note);
            continue;
        }
        split->samples[split->n_samples++] = (DatasetSample){
            .image_path = yp_strdup(src->image_paths[i]),
            .width = r->width,
            .height = r->height,
            .cls = src->classes ? src->classes[i] : -1,
            .first_box = split->n_boxes,
            .n_boxes = r->n_boxes,
        };
        if (r->n_boxes) memcpy(split->boxes + split->n_boxes, r->boxes, (size_t)r->n_boxes * sizeof *r->boxes);
        split->n_boxes += r->n_boxes;
        split->n_unlabelled += r->unlabelled;
        split->n_duplicates += r->n_duplicates;
        free(r->boxes);
    }
}

bool dataset_scan(const Dataset *ds, DatasetSplitId id, int n_threads, DatasetSplit **out, Error *err) {
    YP_CHECK(id >= 0 && id < DATASET_SPLIT_COUNT);
    *out = NULL;
    const DatasetSource *src = &ds->sources[id];
    if (!src->present) return error_set(err, "%s: the dataset has no %s split", ds->root, dataset_split_names[id]);
    ScanJob job = {.ds = ds, .src = src, .results = yp_calloc((size_t)src->n_images, sizeof *job.results)};
    atomic_init(&job.next, 0);
    int n_workers = n_threads > 1 ? (int)(n_threads < src->n_images ? n_threads : src->n_images) : 0;
    pthread_t *threads = yp_calloc((size_t)(n_workers ? n_workers : 1), sizeof *threads);
    for (int t = 0; t < n_workers; t++) YP_CHECK(pthread_create(&threads[t], NULL, scan_worker, &job) == 0);
    if (!n_workers) scan_worker(&job);
    for (int t = 0; t < n_workers; t++) YP_CHECK(pthread_join(threads[t], NULL) == 0);
    free(threads);

    DatasetSplit *split = yp_calloc(1, sizeof *split);
    *split = (DatasetSplit){.task = ds->task, .id = id, .nc = ds->nc, .n_listed = src->n_images};
    merge_results(src, job.results, split);
    free(job.results);
    if (split->n_samples == 0) {
        error_set(err, "%s: %s: no usable images: all %lld were skipped (first: %s)", src->where, dataset_split_names[id],
                  (long long)src->n_images, split->notes[0]);
        dataset_split_destroy(split);
        return false;
    }
    *out = split;
    return true;
}

void dataset_split_destroy(DatasetSplit *split) {
    if (!split) return;
    for (int64_t i = 0; i < split->n_samples; i++) free((char *)split->samples[i].image_path);
    free(split->samples);
    free(split->boxes);
    free(split);
}

void dataset_split_print_summary(const DatasetSplit *split, FILE *out) {
    fprintf(out, "%s: %lld images", dataset_split_names[split->id], (long long)split->n_samples);
    if (split->task == DATASET_TASK_DETECT) fprintf(out, ", %lld boxes", (long long)split->n_boxes);
    else fprintf(out, " in %d classes", split->nc);
    int64_t skipped = dataset_split_skipped(split);
    fprintf(out, ", %lld skipped", (long long)skipped);
    const char *sep = " (";
    for (int k = 0; k < DATASET_SKIP_COUNT; k++) {
        if (!split->n_skipped[k]) continue;
        fprintf(out, "%s%lld %s", sep, (long long)split->n_skipped[k], dataset_skip_names[k]);
        sep = ", ";
    }
    if (skipped) fputc(')', out);
    if (split->n_unlabelled) fprintf(out, ", %lld without a label file", (long long)split->n_unlabelled);
    if (split->n_duplicates) fprintf(out, ", %lld duplicate label rows dropped", (long long)split->n_duplicates);
    fputc('\n', out);
    for (int i = 0; i < split->n_notes; i++) fprintf(out, "  %s\n", split->notes[i]);
    if (skipped > split->n_notes) fprintf(out, "  ... and %lld more skipped\n", (long long)(skipped - split->n_notes));
}
