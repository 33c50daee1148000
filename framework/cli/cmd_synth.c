// `yolopipe synth [--task detect|classify] [--out DIR] [--train N] [--val N] [--imgsz S] [--classes K]
// [--seed S] [--force]`: writes a synthetic shapes dataset (framework/data/synth.h).
#include <stddef.h>
#include <stdio.h>

#include "framework/cli/cli.h"
#include "framework/core/clock.h"
#include "framework/data/synth.h"

static bool synth_parse_task(void *args, const CliOption *option, const char *text, Error *err) {
    if (synth_task_parse(text, &((SynthConfig *)args)->task)) return true;
    return error_set(err, "--%s must be detect or classify, found '%s'", option->name, text);
}

// The integer options: the option's name is the key synth_config_set_int knows.
static bool synth_parse_int(void *args, const CliOption *option, const char *text, Error *err) {
    int64_t v;
    char what[32];
    snprintf(what, sizeof what, "--%s", option->name);
    if (!cli_parse_int64(text, &v)) return error_set(err, "%s expects an integer, found '%s'", what, text);
    return synth_config_set_int(args, option->name, v, what, err);
}

static const CliOption synth_options[] = {
    {.name = "task", .value = CLI_VALUE_CUSTOM, .parse = synth_parse_task, .metavar = "detect|classify",
     .help = "detect (default): 1-6 shapes per image, labels/*.txt;\nclassify: one shape, DIR/train/<class>/"},
    {.name = "out", .value = CLI_VALUE_STRING, .offset = offsetof(SynthConfig, out_dir), .metavar = "DIR",
     .help = "dataset directory (default data/shapes, or data/shapes-cls for classify)"},
    {.name = "train", .value = CLI_VALUE_CUSTOM, .parse = synth_parse_int, .metavar = "N",
     .help = "training images (default 2000)"},
    {.name = "val", .value = CLI_VALUE_CUSTOM, .parse = synth_parse_int, .metavar = "N",
     .help = "validation images (default 200)"},
    {.name = "imgsz", .value = CLI_VALUE_CUSTOM, .parse = synth_parse_int, .metavar = "S",
     .help = "image side in pixels (default 256)"},
    {.name = "classes", .value = CLI_VALUE_CUSTOM, .parse = synth_parse_int, .metavar = "K",
     .help = "number of shape classes, 1-6 (default 4)"},
    {.name = "seed", .value = CLI_VALUE_CUSTOM, .parse = synth_parse_int, .metavar = "S",
     .help = "random seed (default 0)"},
    {.name = "force", .value = CLI_VALUE_FLAG, .offset = offsetof(SynthConfig, force),
     .help = "replace an existing dataset directory"},
};

const CliCommand cmd_synth_cli = {
    .name = "synth",
    .summary = "write a synthetic shapes dataset",
    .description = "Writes a dataset of coloured shapes (circle, square, triangle, cross, ring, star: the first K) on\n"
                   "textured backgrounds, in Ultralytics' layout, with DIR/data.yaml. The same options give the same\n"
                   "files.\n",
    .options = synth_options,
    .n_options = sizeof synth_options / sizeof *synth_options,
    .run = cmd_synth,
};

int cmd_synth(int argc, char **argv) {
    SynthConfig cfg = synth_config_default();
    int rc = cli_parse(&cmd_synth_cli, argc, argv, &cfg);
    if (rc != CLI_PARSED) return rc;
    if (!cfg.out_dir) cfg.out_dir = cfg.task == SYNTH_TASK_DETECT ? "data/shapes" : "data/shapes-cls";
    cfg.progress = stderr;
    Error err = {0};
    SynthSummary summary;
    double start = clock_monotonic_s();
    if (!synth_generate(&cfg, &summary, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return YP_EXIT_USAGE;
    }
    printf("synth: %lld images", (long long)summary.n_images);
    if (cfg.task == SYNTH_TASK_DETECT) printf(", %lld boxes", (long long)summary.n_boxes);
    printf(" in %.1f s: %s/data.yaml\n", clock_monotonic_s() - start, cfg.out_dir);
    return 0;
}
