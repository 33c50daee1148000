// Command-line front end: one function per subcommand, each returning the process exit code.
#pragma once

#include <stdbool.h>
#include <stdint.h>

// Parses a positive integer option value; on failure prints "yolopipe: <option> ..." and returns false.
bool cli_parse_positive(const char *option, const char *text, int64_t *out);
// Parses any integer option value; on failure prints "yolopipe: <option> ..." and returns false.
bool cli_parse_int(const char *option, const char *text, int64_t *out);

int cmd_info(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_val(int argc, char **argv);
int cmd_export(int argc, char **argv);
