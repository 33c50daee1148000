// The shared argument parser (cli.h): a command's table becomes getopt_long's option array, and
// every message a user can get from parsing is written here, once.
#include "framework/cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// getopt_long's code for option i of a command's table is CLI_OPTION_CODE + i: above every
// character, so that it never collides with 'h' or with what getopt itself returns (1, ':', '?').
enum { CLI_OPTION_CODE = 256 };

// Columns: usage lines wrap before this width; option names are padded to at most this many
// characters before their help text.
enum { CLI_LINE_WIDTH = 100, CLI_OPTION_COLUMN = 26 };

static void *cli_field(void *args, size_t offset) { return (char *)args + offset; }

int cli_usage_error(const CliCommand *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "yolopipe %s: ", cmd->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return YP_EXIT_USAGE;
}

// ---- help -----------------------------------------------------------------------------------------

// "--set section.key=value", "--json": the option as the usage line and the option list show it.
static void cli_option_spec(const CliOption *o, char *buf, size_t cap) {
    snprintf(buf, cap, "--%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
}

// Prints the usage line, wrapped under the first argument when it gets longer than CLI_LINE_WIDTH.
static void cli_print_usage_line(const CliCommand *cmd, FILE *f) {
    int column = fprintf(f, "usage: %syolopipe %s", cmd->usage_prefix ? cmd->usage_prefix : "", cmd->name);
    int indent = column + 1;
    int n_words = cmd->n_positionals + cmd->n_options;
    for (int i = 0; i < n_words; i++) {
        char word[160];
        if (i < cmd->n_positionals) {
            const CliPositional *p = &cmd->positionals[i];
            snprintf(word, sizeof word, p->optional ? "[%s]%s" : "%s%s", p->metavar, p->repeated ? "..." : "");
        } else {
            const CliOption *o = &cmd->options[i - cmd->n_positionals];
            char spec[128];
            cli_option_spec(o, spec, sizeof spec);
            snprintf(word, sizeof word, o->required ? "%s" : o->value == CLI_VALUE_LIST ? "[%s]..." : "[%s]", spec);
        }
        int len = (int)strlen(word);
        if (column + 1 + len > CLI_LINE_WIDTH && column > indent) column = fprintf(f, "\n%*s", indent - 1, "") - 1;
        column += fprintf(f, " %s", word);
    }
    fputc('\n', f);
}

// Prints one row of the option list: the spec, padded, then the help text, whose further lines
// (after each '\n') start under its first.
static void cli_print_option_row(FILE *f, const char *spec, const char *help) {
    int width = fprintf(f, "  %s", spec);
    if (width + 2 > CLI_OPTION_COLUMN + 2) {
        fprintf(f, "\n%*s", CLI_OPTION_COLUMN + 2, "");
    } else {
        fprintf(f, "%*s", CLI_OPTION_COLUMN + 2 - width, "");
    }
    for (const char *line = help; *line;) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        fprintf(f, "%.*s\n", len, line);
        if (!end || !end[1]) break;
        line = end + 1;
        fprintf(f, "%*s", CLI_OPTION_COLUMN + 2, "");
    }
}

void cli_print_help(const CliCommand *cmd, FILE *f) {
    cli_print_usage_line(cmd, f);
    if (cmd->description) fprintf(f, "\n%s", cmd->description);
    fprintf(f, "\noptions:\n");
    for (int i = 0; i < cmd->n_options; i++) {
        char spec[128];
        cli_option_spec(&cmd->options[i], spec, sizeof spec);
        cli_print_option_row(f, spec, cmd->options[i].help);
    }
    cli_print_option_row(f, "-h, --help", "print this help and exit");
    if (cmd->notes) fprintf(f, "\n%s", cmd->notes);
}

// ---- parsing --------------------------------------------------------------------------------------

bool cli_parse_int64(const char *text, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || end == text) return false;
    *out = v;
    return true;
}

// Stores one value of option o into args. Returns CLI_PARSED, or YP_EXIT_USAGE after the message.
static int cli_store(const CliCommand *cmd, const CliOption *o, const char *text, void *args) {
    void *dst = cli_field(args, o->offset);
    int64_t v = 0;
    switch (o->value) {
    case CLI_VALUE_FLAG:
        *(bool *)dst = true;
        return CLI_PARSED;
    case CLI_VALUE_STRING:
        *(const char **)dst = text;
        return CLI_PARSED;
    case CLI_VALUE_LIST: {
        CliList *list = dst;
        list->items[list->n++] = (char *)text;
        return CLI_PARSED;
    }
    case CLI_VALUE_POSITIVE:
        if (!cli_parse_int64(text, &v) || v < 1 || (o->max > 0 && v > o->max)) {
            if (o->max > 0)
                return cli_usage_error(cmd, "--%s expects an integer from 1 to %lld, found '%s'", o->name,
                                       (long long)o->max, text);
            return cli_usage_error(cmd, "--%s expects a positive integer, found '%s'", o->name, text);
        }
        *(int64_t *)dst = v;
        return CLI_PARSED;
    case CLI_VALUE_CUSTOM: {
        Error err = {0};
        if (!o->parse(args, o, text, &err)) return cli_usage_error(cmd, "%s", err.message);
        return CLI_PARSED;
    }
    case CLI_VALUE_COUNT:
        break;
    }
    yp_fatal("yolopipe %s: option --%s has no value kind", cmd->name, o->name);
}

// The command's repeated last positional (a CliList), or NULL.
static const CliPositional *cli_repeated_positional(const CliCommand *cmd) {
    const CliPositional *last = cmd->n_positionals ? &cmd->positionals[cmd->n_positionals - 1] : NULL;
    return last && last->repeated ? last : NULL;
}

static int cli_store_positional(const CliCommand *cmd, const char *text, int *n_taken, void *args) {
    const CliPositional *rest = cli_repeated_positional(cmd);
    if (rest && *n_taken >= cmd->n_positionals - 1) {
        CliList *list = cli_field(args, rest->offset);
        list->items[list->n++] = (char *)text;
        *n_taken = cmd->n_positionals;
        return CLI_PARSED;
    }
    if (*n_taken == cmd->n_positionals)
        return cli_usage_error(cmd, "unexpected argument '%s' (see yolopipe %s --help)", text, cmd->name);
    *(const char **)cli_field(args, cmd->positionals[(*n_taken)++].offset) = text;
    return CLI_PARSED;
}

// The name getopt_long matched for a result (c, optopt), or NULL when it matched none.
static const char *cli_matched_name(const CliCommand *cmd, int c, int opt) {
    int code = c == ':' || c == '?' ? opt : c;
    if (code == 'h') return "help";
    if (code >= CLI_OPTION_CODE && code < CLI_OPTION_CODE + cmd->n_options)
        return cmd->options[code - CLI_OPTION_CODE].name;
    return NULL;
}

// Whether the command-line word `typed` ("--name" or "--name=value") names `name` whole (getopt_long
// also accepts an unambiguous abbreviation).
static bool cli_names_whole(const char *typed, const char *name) {
    size_t len = strlen(name);
    return !strncmp(typed + 2, name, len) && (typed[2 + len] == '\0' || typed[2 + len] == '=');
}

// Handles one result of getopt_long; `typed` is the command-line word it came from.
static int cli_handle(const CliCommand *cmd, int c, const char *typed, bool *seen, int *n_taken, void *args) {
    if (c == 1) return cli_store_positional(cmd, optarg, n_taken, args);
    const char *matched = cli_matched_name(cmd, c, optopt);
    bool long_form = typed[0] == '-' && typed[1] == '-';
    if (!matched || (long_form && !cli_names_whole(typed, matched))) {
        const char *eq = strchr(typed, '=');
        int len = eq ? (int)(eq - typed) : (int)strlen(typed);
        return cli_usage_error(cmd, "unknown option %.*s (see yolopipe %s --help)", len, typed, cmd->name);
    }
    if (c == '?') return cli_usage_error(cmd, "--%s takes no value", matched);
    if (c == ':') return cli_usage_error(cmd, "--%s needs a value", matched);
    if (c == 'h') {
        cli_print_help(cmd, stdout);
        return 0;
    }
    seen[c - CLI_OPTION_CODE] = true;
    return cli_store(cmd, &cmd->options[c - CLI_OPTION_CODE], optarg, args);
}

int cli_parse(const CliCommand *cmd, int argc, char **argv, void *args) {
    int n = cmd->n_options;
    struct option *longopts = yp_calloc((size_t)n + 2, sizeof *longopts);  // the table, --help, zeros
    for (int i = 0; i < n; i++) {
        const CliOption *o = &cmd->options[i];
        longopts[i] = (struct option){o->name, o->value == CLI_VALUE_FLAG ? no_argument : required_argument, NULL,
                                      CLI_OPTION_CODE + i};
        if (o->value == CLI_VALUE_LIST)  // each value takes at least one word: argc entries suffice
            *(CliList *)cli_field(args, o->offset) = (CliList){.items = yp_calloc((size_t)argc + 1, sizeof(char *))};
    }
    const CliPositional *rest = cli_repeated_positional(cmd);
    if (rest) *(CliList *)cli_field(args, rest->offset) = (CliList){.items = yp_calloc((size_t)argc + 1, sizeof(char *))};
    longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
    // getopt_long wants the program's name before the arguments and NULL after them.
    char **words = yp_calloc((size_t)argc + 2, sizeof *words);
    words[0] = (char *)cmd->name;
    memcpy(words + 1, argv, (size_t)argc * sizeof *words);
    bool *seen = yp_calloc((size_t)n + 1, sizeof *seen);
    int n_taken = 0, rc = CLI_PARSED;

    // optstring "-:h": '-' returns each positional argument in place as code 1 (so that they may
    // stand among the options, and the word an option came from is words[optind] before the call);
    // ':' returns ':' for a missing value. opterr = 0: getopt prints nothing, the messages are ours.
    // optind = 0: glibc starts afresh (a plain 1 would keep the state of an earlier parse).
    opterr = 0;
    optind = 0;
    while (rc == CLI_PARSED) {
        int at = optind > 0 ? optind : 1;
        const char *typed = at <= argc ? words[at] : "";
        int c = getopt_long(argc + 1, words, "-:h", longopts, NULL);
        if (c == -1) break;
        rc = cli_handle(cmd, c, typed, seen, &n_taken, args);
    }
    // Words after "--" are positional whatever they look like.
    for (int i = optind; rc == CLI_PARSED && i <= argc; i++) rc = cli_store_positional(cmd, words[i], &n_taken, args);
    for (int i = n_taken; rc == CLI_PARSED && i < cmd->n_positionals; i++)
        if (!cmd->positionals[i].optional)
            rc = cli_usage_error(cmd, "missing %s (see yolopipe %s --help)", cmd->positionals[i].metavar, cmd->name);
    for (int i = 0; rc == CLI_PARSED && i < n; i++) {
        const CliOption *o = &cmd->options[i];
        if (!o->required || seen[i]) continue;
        char spec[128];
        cli_option_spec(o, spec, sizeof spec);
        rc = cli_usage_error(cmd, "missing %s (see yolopipe %s --help)", spec, cmd->name);
    }

    if (rc != CLI_PARSED) {
        if (rest) {
            CliList *list = cli_field(args, rest->offset);
            free(list->items);
            *list = (CliList){0};
        }
        for (int i = 0; i < n; i++) {
            if (cmd->options[i].value != CLI_VALUE_LIST) continue;
            CliList *list = cli_field(args, cmd->options[i].offset);
            free(list->items);
            *list = (CliList){0};
        }
    }
    free(seen);
    free(words);
    free(longopts);
    return rc;
}
