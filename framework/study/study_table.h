// A study's points.csv in memory: a header of column names and rows of text cells (RFC 4180 quoting:
// labels and partition values hold commas). The file is the study's record: rows are appended and
// flushed one at a time as points finish, --resume reads it back, and the summary is drawn from it.
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "framework/core/error.h"

typedef struct StudyTable {
    int n_cols;
    char **cols;   // owned
    int n_rows, cap_rows;
    char ***rows;  // rows[r][c], owned; "" for an empty cell
} StudyTable;

// A table with these columns and no rows.
void study_table_init(StudyTable *t, int n_cols, char *const *cols);
void study_table_clear(StudyTable *t);

// Reads a CSV written by study_table_append_file. A missing file is an empty table with no columns
// (*exists false); a malformed one is a user error "path:line: ...".
bool study_table_read(const char *path, StudyTable *t, bool *exists, Error *err);

// The index of column `name`, or -1.
int study_table_col(const StudyTable *t, const char *name);
// Row r's cell in column `name`: its text, or "" when the table has no such column.
const char *study_table_cell(const StudyTable *t, int r, const char *name);
// The cell as a number; false (and *out untouched) when empty or not a number.
bool study_table_number(const StudyTable *t, int r, const char *name, double *out);

// Sets row r's cell in column `name` (which must exist) to a copy of text.
void study_table_set(StudyTable *t, int r, const char *name, const char *text);

// Appends a row (n_cols cells, copied) to the table in memory.
void study_table_add(StudyTable *t, char *const *cells);

// Writes one CSV line of n cells to f (quoted where needed).
void study_table_write_line(FILE *f, int n, char *const *cells);

// Appends row r to the CSV at path, writing the header first when the file is new or empty; flushes
// and fsyncs, so that a killed study keeps every finished row.
bool study_table_append_file(const StudyTable *t, int r, const char *path, Error *err);
