// `yolopipe val EXP.yaml --weights DIR [--set k=v]...`: validates a checkpoint.
#include "framework/cli/cli.h"
#include "framework/core/error.h"

int cmd_val(int argc, char **argv) {
    static const char usage[] =
        "usage: yolopipe val EXP.yaml --weights DIR [--set section.key=value]...\n"
        "  validates the EMA weights of checkpoint DIR (e.g. runs/default/weights/best) on the validation split\n";
    ExperimentArgs args;
    if (!cmd_experiment_args_parse("val", usage, argc, argv, false, true, &args)) return YP_EXIT_USAGE;
    return cmd_experiment_run(&args, true);
}
