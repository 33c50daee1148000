// The points.csv table: RFC 4180 reading and writing, appends that survive a kill.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/core/fsutil.h"
#include "framework/study/study_table.h"

static char **cells_copy(int n, char *const *cells) {
    char **out = yp_calloc((size_t)n, sizeof *out);
    for (int c = 0; c < n; c++) out[c] = yp_strdup(cells[c] ? cells[c] : "");
    return out;
}

static void cells_free(int n, char **cells) {
    if (!cells) return;
    for (int c = 0; c < n; c++) free(cells[c]);
    free(cells);
}

void study_table_init(StudyTable *t, int n_cols, char *const *cols) {
    *t = (StudyTable){.n_cols = n_cols, .cols = cells_copy(n_cols, cols)};
}

void study_table_clear(StudyTable *t) {
    for (int r = 0; r < t->n_rows; r++) cells_free(t->n_cols, t->rows[r]);
    free(t->rows);
    cells_free(t->n_cols, t->cols);
    *t = (StudyTable){0};
}

void study_table_add(StudyTable *t, char *const *cells) {
    if (t->n_rows == t->cap_rows) {
        t->cap_rows = t->cap_rows ? 2 * t->cap_rows : 16;
        t->rows = yp_realloc(t->rows, (size_t)t->cap_rows * sizeof *t->rows);
    }
    t->rows[t->n_rows++] = cells_copy(t->n_cols, cells);
}

int study_table_col(const StudyTable *t, const char *name) {
    for (int c = 0; c < t->n_cols; c++)
        if (!strcmp(t->cols[c], name)) return c;
    return -1;
}

const char *study_table_cell(const StudyTable *t, int r, const char *name) {
    int c = study_table_col(t, name);
    return c < 0 ? "" : t->rows[r][c];
}

bool study_table_number(const StudyTable *t, int r, const char *name, double *out) {
    const char *s = study_table_cell(t, r, name);
    if (!*s) return false;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return false;
    *out = v;
    return true;
}

void study_table_set(StudyTable *t, int r, const char *name, const char *text) {
    int c = study_table_col(t, name);
    YP_CHECK(c >= 0 && r >= 0 && r < t->n_rows);
    free(t->rows[r][c]);
    t->rows[r][c] = yp_strdup(text);
}

static void write_cell(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void study_table_write_line(FILE *f, int n, char *const *cells) {
    for (int c = 0; c < n; c++) {
        if (c) fputc(',', f);
        write_cell(f, cells[c] ? cells[c] : "");
    }
    fputc('\n', f);
}

// One CSV record from *p (advanced past it): its cells, quoted fields unquoted. False on an
// unterminated quote or text after a closing quote.
static bool read_record(const char **p, int *n_out, char ***out) {
    int n = 0, cap = 8;
    char **cells = yp_malloc((size_t)cap * sizeof *cells);
    const char *s = *p;
    for (;;) {
        size_t len = 0, cell_cap = 16;
        char *cell = yp_malloc(cell_cap);
        bool quoted = *s == '"';
        if (quoted) s++;
        for (;;) {
            char ch = *s;
            if (quoted) {
                if (!ch) goto malformed;
                if (ch == '"') {
                    if (s[1] == '"') s++;
                    else {
                        s++;
                        if (*s && *s != ',' && *s != '\n' && *s != '\r') goto malformed;
                        break;
                    }
                }
            } else if (!ch || ch == ',' || ch == '\n' || ch == '\r') break;
            if (len + 2 > cell_cap) cell = yp_realloc(cell, cell_cap *= 2);
            cell[len++] = *s++;
        }
        cell[len] = '\0';
        if (n == cap) cells = yp_realloc(cells, (size_t)(cap *= 2) * sizeof *cells);
        cells[n++] = cell;
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s == '\r') s++;
        if (*s == '\n') s++;
        break;
    malformed:
        free(cell);
        cells_free(n, cells);
        return false;
    }
    *p = s;
    *n_out = n;
    *out = cells;
    return true;
}

bool study_table_read(const char *path, StudyTable *t, bool *exists, Error *err) {
    *t = (StudyTable){0};
    char *text;
    size_t n_bytes;
    *exists = fs_read_file(path, FS_READ_CSV, &text, &n_bytes, err);
    if (!*exists) {
        if (errno != ENOENT) return false;
        *err = (Error){0};
        return true;
    }
    // A kill mid-append can leave a last row without its newline: it is not a finished point.
    if (n_bytes && text[n_bytes - 1] != '\n') {
        char *last = strrchr(text, '\n');
        if (last) last[1] = '\0';
        else text[0] = '\0';
    }
    bool ok = true;
    const char *p = text;
    for (int line = 1; ok && *p; line++) {
        int n;
        char **cells;
        if (!read_record(&p, &n, &cells)) {
            ok = error_at(err, path, line, 1, "malformed CSV record (an unterminated quote?)");
        } else if (line == 1) {
            t->n_cols = n;
            t->cols = cells;
        } else if (n != t->n_cols) {
            cells_free(n, cells);
            // A row cut short by a crash mid-write is the only way to get here from our own writer.
            ok = error_at(err, path, line, 1, "%d cells where the header has %d (a row written half? remove it)", n,
                          t->n_cols);
        } else {
            study_table_add(t, cells);
            cells_free(n, cells);
        }
    }
    free(text);
    if (!ok) study_table_clear(t);
    return ok;
}

bool study_table_append_file(const StudyTable *t, int r, const char *path, Error *err) {
    FILE *f = fopen(path, "a");
    if (!f) return error_set(err, "%s: cannot append: %s", path, strerror(errno));
    long before = ftell(f);
    if (before == 0) study_table_write_line(f, t->n_cols, t->cols);
    study_table_write_line(f, t->n_cols, t->rows[r]);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    // A full disk may have taken part of the row: cut the file back to the rows that are whole.
    if (!ok && before >= 0 && ftruncate(fileno(f), before) != 0) saved = errno;
    ok = fclose(f) == 0 && ok;
    if (!ok) return error_set(err, "%s: cannot append: %s", path, strerror(saved ? saved : errno));
    return true;
}
