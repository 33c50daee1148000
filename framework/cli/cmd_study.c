// `yolopipe study STUDY.yaml [--set k=v]... [--out DIR] [--resume] [--dry-run]`: a scaling study
// (experiments/STUDY.md), simulated with the planner's code and/or measured through a launcher.
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "framework/cli/cli.h"
#include "framework/study/study.h"
#include "framework/study/study_run.h"

typedef struct StudyArgs {
    const char *path, *out;
    CliList set;
    bool resume, dry_run;
} StudyArgs;

static const CliOption study_options[] = {
    {.name = "set", .value = CLI_VALUE_LIST, .offset = offsetof(StudyArgs, set), .metavar = "key=value",
     .help = "override a study key (repeatable; keys in experiments/STUDY.md)"},
    {.name = "out", .value = CLI_VALUE_STRING, .offset = offsetof(StudyArgs, out), .metavar = "DIR",
     .help = "where points.csv, summary.md and the figures go (default: the study's out, studies/<name>)"},
    {.name = "resume", .value = CLI_VALUE_FLAG, .offset = offsetof(StudyArgs, resume),
     .help = "finish a study begun in the same folder, skipping the points points.csv has"},
    {.name = "dry-run", .value = CLI_VALUE_FLAG, .offset = offsetof(StudyArgs, dry_run),
     .help = "list the points, the dropped combinations and the expected time; run nothing"},
};

static const CliPositional study_positionals[] = {{.metavar = "STUDY.yaml", .offset = offsetof(StudyArgs, path)}};

const CliCommand cmd_study_cli = {
    .name = "study",
    .summary = "a scaling study: sweep layouts, simulate and measure them, time and cost to train",
    .description = "Expands the study's points (sweep, points, where), plans and simulates each with the code of\n"
                   "`yolopipe plan` and, when the study measures, runs it through the launcher for a few steps.\n"
                   "Each finished point is appended to <out>/points.csv; then summary.md and the figures.\n",
    .positionals = study_positionals,
    .n_positionals = 1,
    .options = study_options,
    .n_options = sizeof study_options / sizeof *study_options,
    .notes = "The study file: experiments/STUDY.md. Shipped studies: experiments/studies/.\n",
    .run = cmd_study,
};

int cmd_study(int argc, char **argv) {
    StudyArgs args = {0};
    int rc = cli_parse(&cmd_study_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
    Error err = {0};
    StudyConfig *s = NULL;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    bool ok = n > 0 || error_set(&err, "yolopipe study: cannot find this program's path (/proc/self/exe)");
    if (ok) self[n] = '\0';
    ok = ok && study_config_load(args.path, args.set.n, args.set.items, &s, &err);
    if (ok) {
        StudyRunOptions opt = {.out = args.out, .resume = args.resume, .dry_run = args.dry_run, .self_exe = self,
                               .log = stdout};
        ok = study_run(s, &opt, &err);
    }
    if (!ok) fprintf(stderr, "%s\n", err.message);
    study_config_destroy(s);
    free(args.set.items);
    return ok ? 0 : YP_EXIT_USAGE;
}
