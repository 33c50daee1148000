// Command-line front end: one function per subcommand, each returning the process exit code.
#pragma once

#include <stdbool.h>
#include <stdint.h>

// Parses a positive integer option value; on failure prints "yolopipe: <option> ..." and returns false.
bool cli_parse_positive(const char *option, const char *text, int64_t *out);
// Parses any integer option value; on failure prints "yolopipe: <option> ..." and returns false.
bool cli_parse_int(const char *option, const char *text, int64_t *out);

// What train and val take (cmd_train.c).
typedef struct ExperimentArgs {
    const char *path;
    int n_set;
    char **set;         // the values after each --set (argv entries)
    bool resume;
    bool trace;
    const char *weights;
} ExperimentArgs;

// Parses EXP.yaml, --set k=v (repeatable) and the command's own flags.
bool cmd_experiment_args_parse(const char *command, const char *usage, int argc, char **argv, bool allow_resume,
                               bool allow_weights, ExperimentArgs *args);
// Loads the experiment, opens the transport and trains (or, validate_only, validates args->weights);
// frees args->set; returns the exit code.
int cmd_experiment_run(const ExperimentArgs *args, bool validate_only);

int cmd_info(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_val(int argc, char **argv);
int cmd_export(int argc, char **argv);
