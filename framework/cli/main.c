// yolopipe: the command-line entry point. Dispatches to one command per file (cli.h), and `help`.
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build_config.h"
#include "framework/cli/cli.h"
#include "framework/core/error.h"
#include "framework/eval/canvas.h"
#if YP_HAVE_CUDA
#include "kernels/cuda/cuda_device.h"
#endif

static int cmd_help(int argc, char **argv);

typedef struct HelpArgs {
    const char *command;
} HelpArgs;

static const CliPositional help_positionals[] = {
    {.metavar = "COMMAND", .offset = offsetof(HelpArgs, command), .optional = true}};

static const CliCommand help_cli = {
    .name = "help",
    .summary = "this list, or a command's usage and options",
    .description = "Lists the commands, or prints COMMAND's usage and options (as yolopipe COMMAND --help does).\n",
    .positionals = help_positionals,
    .n_positionals = 1,
    .run = cmd_help,
};

static const CliCommand *const commands[] = {
    &cmd_info_cli, &cmd_plan_cli, &cmd_profile_cli, &cmd_synth_cli, &cmd_train_cli, &cmd_val_cli, &cmd_export_cli, &cmd_predict_cli, &cmd_study_cli,
    &help_cli,
};

static const CliCommand *command_find(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(name, commands[i]->name)) return commands[i];
    return NULL;
}

// The command list: each command with its positional arguments and summary.
static void print_commands(FILE *f) {
    fprintf(f, "yolopipe %s: pipeline- and data-parallel training for YOLO networks\n\n", YP_VERSION);
    fprintf(f, "usage: yolopipe COMMAND [ARGUMENTS] [OPTIONS]\n       yolopipe --version\n\ncommands:\n");
    enum { N_COMMANDS = sizeof commands / sizeof *commands };
    char synopses[N_COMMANDS][64];
    int width = 0;  // the longest synopsis: every summary starts in the same column
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const CliCommand *c = commands[i];
        char *synopsis = synopses[i];
        int used = snprintf(synopsis, sizeof synopses[i], "%s", c->name);
        for (int k = 0; k < c->n_positionals && used > 0 && (size_t)used < sizeof synopses[i]; k++)
            used += snprintf(synopsis + used, sizeof synopses[i] - (size_t)used, c->positionals[k].optional ? " [%s]%s" : " %s%s",
                             c->positionals[k].metavar, c->positionals[k].repeated ? "..." : "");
        int len = (int)strlen(synopsis);
        if (len > width) width = len;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-*s  %s\n", width, synopses[i], commands[i]->summary);
    fprintf(f, "\n`yolopipe help COMMAND` or `yolopipe COMMAND --help` shows a command's options.\n");
}

static int cmd_help(int argc, char **argv) {
    HelpArgs args = {0};
    int rc = cli_parse(&help_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
    if (!args.command) {
        print_commands(stdout);
        return 0;
    }
    const CliCommand *c = command_find(args.command);
    if (!c) return cli_usage_error(&help_cli, "unknown command '%s' (see yolopipe help)", args.command);
    cli_print_help(c, stdout);
    return 0;
}

// OpenMP threads that spin while idle steal the cores that OpenBLAS and the data loader need (a
// training step ran 4x slower), and threads that sleep at once pay a wake-up for every parallel
// region (oneDNN runs one per reorder and per convolution: the tests' small convolutions ran 10x
// slower). So when the user has chosen neither, the process sets the passive policy with a short
// spin first (libgomp's GOMP_SPINCOUNT) and executes itself again: libgomp reads both when it loads.
static void ensure_passive_openmp(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv("GOMP_SPINCOUNT", "1000", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on with spinning threads
}

int main(int argc, char **argv) {
    ensure_passive_openmp(argv);
    // A write past `ulimit -f` then fails with EFBIG, which the writer reports naming the file,
    // instead of SIGXFSZ ending the process without a word.
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        print_commands(stderr);
        return YP_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_commands(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("yolopipe %s\n", YP_VERSION);
#if YP_HAVE_CUDA
        printf("CUDA support: built%s\n", YP_HAVE_NCCL ? ", with the NCCL transport" : ", without NCCL");
        cuda_device_describe(stdout);
#else
        printf("CUDA support: not built (CPU only)\n");
#endif
        return 0;
    }
    const CliCommand *c = command_find(argv[1]);
    if (c) {
        int rc = c->run(argc - 2, argv + 2);
        canvas_release_fonts();  // the pictures' font caches: a leak check at exit sees only our memory
        return rc;
    }
    fprintf(stderr, "yolopipe: unknown command '%s' (see yolopipe help)\n", argv[1]);
    return YP_EXIT_USAGE;
}
