// `yolopipe synth [--task detect|classify] [--out DIR] [--train N] [--val N] [--imgsz S] [--classes K]
// [--seed S] [--force]`: writes a synthetic shapes dataset (framework/data/synth.h).
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "framework/cli/cli.h"
#include "framework/data/synth.h"

static const char synth_usage[] =
    "usage: yolopipe synth [--task detect|classify] [--out DIR] [--train N] [--val N] [--imgsz S] [--classes K]\n"
    "                      [--seed S] [--force]\n";

static const char synth_help[] =
    "\nWrites a dataset of coloured shapes (circle, square, triangle, cross, ring, star: the first K) on\n"
    "textured backgrounds, in Ultralytics' layout, with DIR/data.yaml. The same options give the same files.\n\n"
    "  --task     detect (default): 1-6 shapes per image, labels/*.txt; classify: one shape, DIR/train/<class>/\n"
    "  --out      dataset directory (default data/shapes, or data/shapes-cls for classify)\n"
    "  --train    training images (default 2000)\n"
    "  --val      validation images (default 200)\n"
    "  --imgsz    image side in pixels (default 256)\n"
    "  --classes  number of shape classes, 1-6 (default 4)\n"
    "  --seed     random seed (default 0)\n"
    "  --force    replace an existing dataset directory\n";

// The integer options, "--" + the key synth_config_set_int knows.
static const char *const int_options[] = {"train", "val", "imgsz", "classes", "seed"};

static bool synth_parse_args(int argc, char **argv, SynthConfig *cfg, bool *help) {
    *cfg = synth_config_default();
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc, known = false;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = true;
            return true;
        }
        if (!strcmp(a, "--force")) {
            cfg->force = known = true;
        } else if (!strcmp(a, "--out") && has_value) {
            cfg->out_dir = argv[++i];
            known = true;
        } else if (!strcmp(a, "--task") && has_value) {
            if (!synth_task_parse(argv[++i], &cfg->task)) {
                fprintf(stderr, "yolopipe synth: --task must be detect or classify, found '%s'\n", argv[i]);
                return false;
            }
            known = true;
        }
        for (size_t k = 0; !known && has_value && k < sizeof int_options / sizeof *int_options; k++) {
            if (strncmp(a, "--", 2) || strcmp(a + 2, int_options[k])) continue;
            int64_t v;
            Error err = {0};
            if (!cli_parse_int(a, argv[++i], &v)) return false;
            if (!synth_config_set_int(cfg, int_options[k], v, a, &err)) {
                fprintf(stderr, "yolopipe synth: %s\n", err.message);
                return false;
            }
            known = true;
        }
        if (!known) {
            fprintf(stderr, "yolopipe synth: unknown option or missing value: %s\n%s", a, synth_usage);
            return false;
        }
    }
    if (!cfg->out_dir) cfg->out_dir = cfg->task == SYNTH_TASK_DETECT ? "data/shapes" : "data/shapes-cls";
    return true;
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cmd_synth(int argc, char **argv) {
    SynthConfig cfg;
    bool help = false;
    if (!synth_parse_args(argc, argv, &cfg, &help)) return YP_EXIT_USAGE;
    if (help) {
        printf("%s%s", synth_usage, synth_help);
        return 0;
    }
    cfg.progress = stderr;
    Error err = {0};
    SynthSummary summary;
    double start = seconds_now();
    if (!synth_generate(&cfg, &summary, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return YP_EXIT_USAGE;
    }
    printf("synth: %lld images", (long long)summary.n_images);
    if (cfg.task == SYNTH_TASK_DETECT) printf(", %lld boxes", (long long)summary.n_boxes);
    printf(" in %.1f s: %s/data.yaml\n", seconds_now() - start, cfg.out_dir);
    return 0;
}
