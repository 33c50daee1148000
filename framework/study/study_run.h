// `yolopipe study`: runs a study's points (simulated with the planner's code, measured through the
// launcher, or both), appends each finished point to <out>/points.csv, then writes summary.md and
// draws the figures (yolopipe_plot.py study, framework/core/plot_script.h). See experiments/STUDY.md.
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "framework/core/error.h"
#include "framework/study/study.h"
#include "framework/study/study_point.h"
#include "framework/study/study_table.h"

typedef struct StudyRunOptions {
    const char *out;       // overrides the study's out: (NULL: keep it)
    bool resume;           // finish a study begun in out, skipping the points points.csv has
    bool dry_run;          // list the points and the expected time; run and write nothing
    const char *self_exe;  // the yolopipe binary measured points launch
    FILE *log;             // progress lines
} StudyRunOptions;

// Runs the study. User errors (an out folder in use, --resume against a changed study) come back in
// err; a point that fails is a row with its reason, not an error.
bool study_run(const StudyConfig *s, const StudyRunOptions *opt, Error *err);

// The names of points.csv's columns of a modelled term ("term_compute_ms") and of a platform's cost
// ("cost_<name>" for a local cluster, "cost_<name>_on_demand" or, with spot, "cost_<name>_spot").
void study_term_column(StudyTerm t, char *out, size_t cap);
void study_cost_column(const StudyPlatform *pl, bool spot, char *out, size_t cap);

// What study_run writes besides the table (study_report.c).
//   summary.md: the best layout per GPU count, the error table, the modelled terms.
bool study_report_write(const StudyConfig *s, const StudyTable *t, const char *path, Error *err);
// The fastest point (with its time to train) and the prediction error, for the log.
void study_report_print_best(const StudyTable *t, FILE *f);
