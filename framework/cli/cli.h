// Command-line front end: one shared argument parser (getopt_long underneath) and one file per
// command. A command describes itself in a CliCommand, a table of its options and its positional
// arguments with the offset of the field each one fills; cli_parse builds the getopt_long option
// array from it, parses, writes the values, and gives every command the same behaviour:
//
//   --opt value and --opt=value     both accepted for an option that takes a value
//   --help, -h                      the command's usage and options on stdout, exit 0
//   positional arguments            anywhere among the options; everything after `--` is positional
//   usage errors                    one line on stderr, exit 2 (YP_EXIT_USAGE):
//     yolopipe CMD: unknown option --foo (see yolopipe CMD --help)
//     yolopipe CMD: --set needs a value
//     yolopipe CMD: --json takes no value
//     yolopipe CMD: --imgsz expects a positive integer, found 'x'
//     yolopipe CMD: missing EXP.yaml (see yolopipe CMD --help)
//     yolopipe CMD: unexpected argument 'b.yaml' (see yolopipe CMD --help)
//
// Option names match whole: an abbreviation (`--res` for `--resume`) is an unknown option, so that
// adding an option never changes what an existing command line means.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/core/error.h"

// What an option's value is and the type of the field (at CliOption.offset) it writes.
typedef enum CliValue {
    CLI_VALUE_FLAG,      // no value; bool, set to true
    CLI_VALUE_STRING,    // const char *, borrowed from argv; the last one given wins
    CLI_VALUE_LIST,      // CliList: repeatable, every value in order
    CLI_VALUE_POSITIVE,  // int64_t, 1 or more (at most CliOption.max when max > 0)
    CLI_VALUE_CUSTOM,    // CliOption.parse converts and stores the value
    CLI_VALUE_COUNT
} CliValue;

// The values of a repeatable option. items is allocated by cli_parse and owned by the caller
// (free(items)); the strings are borrowed from argv.
typedef struct CliList {
    int n;
    char **items;  // n entries, then NULL
} CliList;

typedef struct CliOption CliOption;
struct CliOption {
    const char *name;     // without the dashes: "set" for --set
    CliValue value;
    size_t offset;        // of the field in the command's argument struct (offsetof)
    const char *metavar;  // the value in usage lines ("section.key=value"); NULL for a flag
    const char *help;     // one line, or several separated by '\n', for the option list
    bool required;        // usage error when absent
    int64_t max;          // CLI_VALUE_POSITIVE: the largest value allowed (0: no limit)
    // CLI_VALUE_CUSTOM: stores text into the argument struct; on failure fills err with the message
    // (printed as "yolopipe CMD: <message>") and returns false.
    bool (*parse)(void *args, const CliOption *option, const char *text, Error *err);
};

// The --set option of every command that reads an experiment file, filling the CliList `field` of
// the argument struct `type` (config_load takes the list as its overrides).
#define CLI_OPTION_SET(type, field)                                                                     \
    {.name = "set", .value = CLI_VALUE_LIST, .offset = offsetof(type, field), .metavar = "section.key=value", \
     .help = "override an experiment key (repeatable; keys in experiments/SCHEMA.md)"}

// A positional argument: a const char * field, borrowed from argv; or, `repeated` (the last one
// only), a CliList field taking every remaining positional argument (owned as an option's list is).
typedef struct CliPositional {
    const char *metavar;  // "EXP.yaml"
    size_t offset;
    bool optional;
    bool repeated;
} CliPositional;

typedef struct CliCommand {
    const char *name;          // "train"
    const char *summary;       // a few words for `yolopipe help`'s command list
    const char *usage_prefix;  // before "yolopipe" in the usage line ("[mpirun -np N] "), or NULL
    const char *description;   // the paragraph after the usage line in --help (lines end in '\n')
    const CliPositional *positionals;
    int n_positionals;
    const CliOption *options;
    int n_options;
    const char *notes;  // printed after the option list, or NULL
    // The command itself: argv holds the arguments after the command's name (argv[0] is the first
    // of them), argc counts them; returns the process's exit code.
    int (*run)(int argc, char **argv);
} CliCommand;

// cli_parse's result when the command should go on: anything else is the exit code to return now.
enum { CLI_PARSED = -1 };

// Parses the arguments after the command's name into *args, a struct laid out as cmd's offsets say
// (fields not named on the command line keep the values the caller set). Returns CLI_PARSED on
// success; 0 after printing the help for --help; YP_EXIT_USAGE after printing a usage error. Only on
// CLI_PARSED does the caller own (and free) the CliList items; otherwise they are freed and zeroed.
int cli_parse(const CliCommand *cmd, int argc, char **argv, void *args);

// A whole decimal integer: false for empty text, trailing characters or overflow (for a
// CLI_VALUE_CUSTOM parse function).
bool cli_parse_int64(const char *text, int64_t *out);

// Prints cmd's usage line, description, options and notes to f (what --help prints).
void cli_print_help(const CliCommand *cmd, FILE *f);

// Prints "yolopipe CMD: <formatted message>" and a newline to stderr, and returns YP_EXIT_USAGE.
int cli_usage_error(const CliCommand *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The commands, one file each (cmd_<name>.c).
extern const CliCommand cmd_info_cli, cmd_plan_cli, cmd_profile_cli, cmd_synth_cli, cmd_train_cli, cmd_val_cli,
    cmd_export_cli, cmd_predict_cli, cmd_study_cli;

// What train and val take: the experiment file, its --set overrides and the command's own options.
typedef struct ExperimentArgs {
    const char *path;
    CliList set;
    bool resume;          // train --resume
    bool trace;           // train --trace
    const char *weights;  // val --weights: the checkpoint directory to validate
} ExperimentArgs;

// Shared by train and val (cmd_train.c): loads the experiment with its overrides, opens this rank's
// transport (MPI under a launcher such as mpirun, else one local rank), and trains, or with
// validate_only validates args->weights. Prints the error (once, from rank 0, when every rank found
// the same), frees args->set.items and returns the exit code.
int cmd_experiment_run(ExperimentArgs *args, bool validate_only);

int cmd_info(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_val(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_study(int argc, char **argv);
