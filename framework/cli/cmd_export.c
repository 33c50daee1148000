// `yolopipe export RUN [--weights last|best] --out FILE.safetensors`: a checkpoint's EMA weights as one
// safetensors file with Ultralytics' names.
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "framework/cli/cli.h"
#include "framework/core/path.h"
#include "framework/train/checkpoint.h"

typedef struct ExportArgs {
    const char *run, *out, *which;
} ExportArgs;

static const CliOption export_options[] = {
    {.name = "weights", .value = CLI_VALUE_STRING, .offset = offsetof(ExportArgs, which), .metavar = "last|best",
     .help = "which checkpoint (default best; last when there is no best)"},
    {.name = "out", .value = CLI_VALUE_STRING, .offset = offsetof(ExportArgs, out), .metavar = "FILE.safetensors",
     .required = true, .help = "the file to write"},
};

static const CliPositional export_positionals[] = {{.metavar = "RUN", .offset = offsetof(ExportArgs, run)}};

const CliCommand cmd_export_cli = {
    .name = "export",
    .summary = "a checkpoint's EMA weights as safetensors, with Ultralytics' names",
    .description = "Writes the EMA weights of RUN/weights/<best> (or <last>) as one safetensors file with\n"
                   "Ultralytics' state-dict names.\n",
    .positionals = export_positionals,
    .n_positionals = 1,
    .options = export_options,
    .n_options = sizeof export_options / sizeof *export_options,
    .run = cmd_export,
};

int cmd_export(int argc, char **argv) {
    ExportArgs args = {0};
    int rc = cli_parse(&cmd_export_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
    const char *run = args.run, *out = args.out, *which = args.which;
    if (which && strcmp(which, "last") && strcmp(which, "best"))
        return cli_usage_error(&cmd_export_cli, "--weights must be last or best, found '%s'", which);
    // The file is safetensors whatever its name: a .pt name would promise a PyTorch pickle.
    size_t len = strlen(out), ext = strlen(".safetensors");
    if (len <= ext || strcmp(out + len - ext, ".safetensors"))
        return cli_usage_error(&cmd_export_cli,
                               "--out must name a .safetensors file (the export is safetensors, which "
                               "safetensors.torch.load_file reads), found '%s'",
                               out);
    char dir[PATH_MAX];
    Error err = {0};
    struct stat st;
    // Without --weights: last only where there is no best (a damaged best is an error, not skipped).
    bool ok = path_format(dir, sizeof dir, &err, "%s/weights/%s", run, which ? which : "best");
    if (ok && !which && stat(dir, &st) != 0 && errno == ENOENT)
        ok = path_format(dir, sizeof dir, &err, "%s/weights/last", run);
    if (!ok || !checkpoint_export(dir, out, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return YP_EXIT_USAGE;
    }
    printf("wrote %s (EMA weights of %s)\n", out, dir);
    return 0;
}
