// Runs one measured study point: the study's launcher around `yolopipe train`, started and waited
// for with framework/core/process.h.
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "framework/core/error.h"
#include "framework/core/process.h"

// The launcher template split at white space with {world} and {nodes} replaced in each word:
// "mpirun -np {world} --oversubscribe" → mpirun, -np, 4, --oversubscribe. *argv gets n words then
// NULL (free each and the array with launch_words_free). False when a word names another {field}.
bool launch_expand_template(const char *tmpl, long world, long nodes, int *n, char ***argv, Error *err);
void launch_words_free(int n, char **words);

// The last non-empty line of a log (at most cap - 1 bytes), for a failed point's reason; "" if none.
void launch_log_last_line(const char *log_path, char *out, size_t cap);
