// yolopipe: the command-line entry point. Dispatches to one function per subcommand.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build_config.h"
#include "framework/cli/cli.h"
#include "framework/core/error.h"
#if YP_HAVE_CUDA
#include "kernels/cuda/cuda_device.h"
#endif

typedef struct Command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} Command;

static const Command commands[] = {
    {"info", cmd_info, "info MODEL.yaml [--scale S] [--imgsz N] [--nc K] [--json]   layer table, parameters, GFLOPs"},
    {"plan", cmd_plan, "plan EXP.yaml [--set k=v]... [--json] [--trace F] [--profile CSV]  partition, schedule, timeline"},
    {"profile", cmd_profile, "profile EXP.yaml [--set k=v]... [--out FILE.csv]           per-layer times for the planner"},
    {"synth", cmd_synth, "synth [--task detect|classify] [--out DIR] [--train N] ...   write a synthetic shapes dataset"},
    {"train", cmd_train, "train EXP.yaml [--set section.key=value]... [--resume]      train (experiments/SCHEMA.md)"},
    {"val", cmd_val, "val EXP.yaml --weights DIR [--set section.key=value]...     validate a checkpoint"},
    {"export", cmd_export, "export RUN [--weights last|best] --out FILE.safetensors  EMA weights, Ultralytics names"},
};

static void print_usage(FILE *f) {
    fprintf(f, "yolopipe %s: pipeline- and data-parallel training for YOLO networks\n\nusage:\n", YP_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) fprintf(f, "  yolopipe %s\n", commands[i].help);
}

// OpenMP threads that spin while idle steal the cores that OpenBLAS and the data loader need (a
// training step ran 4x slower). libgomp reads OMP_WAIT_POLICY once, when it loads, so when the user
// has not chosen a policy the process sets "passive" and executes itself again.
static void ensure_passive_openmp(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on with spinning threads
}

int main(int argc, char **argv) {
    ensure_passive_openmp(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? YP_EXIT_USAGE : 0;
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
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "yolopipe: unknown command '%s'\n", argv[1]);
    print_usage(stderr);
    return YP_EXIT_USAGE;
}
