// `yolopipe export RUN [--weights last|best] --out FILE`: a checkpoint's EMA weights as one
// safetensors file with Ultralytics' names.
#include <stdio.h>
#include <string.h>

#include "framework/cli/cli.h"
#include "framework/train/checkpoint.h"

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
