// `yolopipe train EXP.yaml [--set k=v]... [--resume]`, `yolopipe val EXP.yaml --weights DIR [--set k=v]...`
// and `yolopipe export RUN [--weights last|best] --out FILE`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/checkpoint.h"
#include "framework/cli.h"
#include "framework/config.h"
#include "framework/trainer.h"

typedef struct ExperimentArgs {
    const char *path;
    int n_set;
    char **set;         // the values after each --set (argv entries)
    bool resume;
    const char *weights;
} ExperimentArgs;

// Parses EXP.yaml, --set k=v (repeatable) and the command's own flags.
static bool parse_experiment_args(const char *command, const char *usage, int argc, char **argv, bool allow_resume,
                                  bool allow_weights, ExperimentArgs *args) {
    *args = (ExperimentArgs){.set = calloc((size_t)argc + 1, sizeof(char *))};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--set") && i + 1 < argc) {
            args->set[args->n_set++] = argv[++i];
        } else if (!strncmp(a, "--set=", 6)) {
            args->set[args->n_set++] = argv[i] + 6;
        } else if (allow_resume && !strcmp(a, "--resume")) {
            args->resume = true;
        } else if (allow_weights && !strcmp(a, "--weights") && i + 1 < argc) {
            args->weights = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            exit(0);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "yolopipe %s: unknown option or missing value: %s\n%s", command, a, usage);
            return false;
        } else if (!args->path) {
            args->path = a;
        } else {
            fprintf(stderr, "yolopipe %s: one experiment file expected, found a second: %s\n%s", command, a, usage);
            return false;
        }
    }
    if (!args->path) {
        fprintf(stderr, "yolopipe %s: missing EXP.yaml\n%s", command, usage);
        return false;
    }
    if (allow_weights && !args->weights) {
        fprintf(stderr, "yolopipe %s: missing --weights DIR\n%s", command, usage);
        return false;
    }
    return true;
}

static int run_with_config(const ExperimentArgs *args, bool validate_only) {
    Error err = {0};
    ExperimentConfig *cfg = NULL;
    bool ok = config_load(args->path, args->n_set, args->set, &cfg, &err);
    if (ok && validate_only) ok = trainer_validate_checkpoint(cfg, args->weights, stdout, &err);
    else if (ok) ok = trainer_run(cfg, &(TrainerOptions){.resume = args->resume, .out = stdout}, &err);
    if (!ok) fprintf(stderr, "%s\n", err.message);
    config_destroy(cfg);
    free(args->set);
    return ok ? 0 : YP_EXIT_USAGE;
}

int cmd_train(int argc, char **argv) {
    static const char usage[] =
        "usage: yolopipe train EXP.yaml [--set section.key=value]... [--resume]\n"
        "  trains as the experiment file says (experiments/SCHEMA.md); results in <output.dir>/<name>/\n"
        "  --resume continues <output.dir>/<name>/weights/last\n";
    ExperimentArgs args;
    if (!parse_experiment_args("train", usage, argc, argv, true, false, &args)) return YP_EXIT_USAGE;
    return run_with_config(&args, false);
}

int cmd_val(int argc, char **argv) {
    static const char usage[] =
        "usage: yolopipe val EXP.yaml --weights DIR [--set section.key=value]...\n"
        "  validates the EMA weights of checkpoint DIR (e.g. runs/default/weights/best) on the validation split\n";
    ExperimentArgs args;
    if (!parse_experiment_args("val", usage, argc, argv, false, true, &args)) return YP_EXIT_USAGE;
    return run_with_config(&args, true);
}

int cmd_export(int argc, char **argv) {
    static const char usage[] =
        "usage: yolopipe export RUN [--weights last|best] --out FILE.safetensors\n"
        "  writes the EMA weights of RUN/weights/<best> (default; last when there is no best) as one\n"
        "  safetensors file with Ultralytics' state-dict names\n";
    const char *run = NULL, *out = NULL, *which = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--weights") && i + 1 < argc) which = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return fputs(usage, stdout), 0;
        else if (argv[i][0] == '-' || run) {
            fprintf(stderr, "yolopipe export: unexpected argument: %s\n%s", argv[i], usage);
            return YP_EXIT_USAGE;
        } else run = argv[i];
    }
    if (!run || !out) {
        fprintf(stderr, "yolopipe export: %s\n%s", run ? "missing --out FILE" : "missing RUN", usage);
        return YP_EXIT_USAGE;
    }
    if (which && strcmp(which, "last") && strcmp(which, "best")) {
        fprintf(stderr, "yolopipe export: --weights must be last or best, found '%s'\n", which);
        return YP_EXIT_USAGE;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/weights/%s", run, which ? which : "best");
    TrainProgress progress;
    Error err = {0};
    if (!which && !checkpoint_read_progress(dir, &progress, &err))
        snprintf(dir, sizeof dir, "%s/weights/last", run);
    if (!checkpoint_export(dir, out, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return YP_EXIT_USAGE;
    }
    printf("wrote %s (EMA weights of %s)\n", out, dir);
    return 0;
}
