// `yolopipe val EXP.yaml --weights DIR [--set k=v]...`: validates a checkpoint.
#include <stddef.h>

#include "framework/cli/cli.h"

static const CliOption val_options[] = {
    {.name = "weights", .value = CLI_VALUE_STRING, .offset = offsetof(ExperimentArgs, weights), .metavar = "DIR",
     .required = true, .help = "the checkpoint directory (e.g. runs/default/weights/best)"},
    CLI_OPTION_SET(ExperimentArgs, set),
};

static const CliPositional val_positionals[] = {{.metavar = "EXP.yaml", .offset = offsetof(ExperimentArgs, path)}};

const CliCommand cmd_val_cli = {
    .name = "val",
    .summary = "validate a checkpoint",
    .description = "Validates the EMA weights of checkpoint DIR on the experiment's validation split.\n"
                   "Without mpirun it runs in one process whatever parallel.* says.\n",
    .positionals = val_positionals,
    .n_positionals = 1,
    .options = val_options,
    .n_options = sizeof val_options / sizeof *val_options,
    .run = cmd_val,
};

int cmd_val(int argc, char **argv) {
    ExperimentArgs args = {0};
    int rc = cli_parse(&cmd_val_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
    return cmd_experiment_run(&args, true);
}
