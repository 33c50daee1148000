// `yolopipe info MODEL.yaml [--scale S] [--imgsz N] [--nc K] [--json]`: the layer table and summary
// of a model, as Ultralytics' model.info() prints it.
#include <stddef.h>
#include <stdio.h>

#include "framework/cli/cli.h"
#include "framework/core/json.h"
#include "layers/graph.h"

typedef struct InfoArgs {
    const char *model_path;
    ModelOptions model;
    int64_t imgsz;
    bool json;
} InfoArgs;

static const CliOption info_options[] = {
    {.name = "scale", .value = CLI_VALUE_STRING, .offset = offsetof(InfoArgs, model.scale), .metavar = "S",
     .help = "one of the model file's scales (default: its first, with a notice)"},
    {.name = "imgsz", .value = CLI_VALUE_POSITIVE, .offset = offsetof(InfoArgs, imgsz), .metavar = "N", .max = 8192,
     .help = "square input size <= 8192 (default 640; rounded up to a multiple of 32)"},
    {.name = "nc", .value = CLI_VALUE_POSITIVE, .offset = offsetof(InfoArgs, model.nc), .metavar = "K",
     .help = "class count (default: the model file's nc)"},
    {.name = "json", .value = CLI_VALUE_FLAG, .offset = offsetof(InfoArgs, json),
     .help = "print one JSON object instead of the table, for scripts"},
};

static const CliPositional info_positionals[] = {{.metavar = "MODEL.yaml", .offset = offsetof(InfoArgs, model_path)}};

const CliCommand cmd_info_cli = {
    .name = "info",
    .summary = "layer table, parameters and GFLOPs of a model",
    .description = "Prints one row per layer of the model (Ultralytics' YAML format) and a summary, as\n"
                   "Ultralytics' model.info() does.\n",
    .positionals = info_positionals,
    .n_positionals = 1,
    .options = info_options,
    .n_options = sizeof info_options / sizeof *info_options,
    .run = cmd_info,
};

static void format_from(const ModelRow *row, char *buf, size_t cap) {
    size_t used = 0;
    if (row->from_is_list) used += (size_t)snprintf(buf, cap, "[");
    for (int k = 0; k < row->n_from && used < cap; k++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", k ? ", " : "", (long long)row->from_written[k]);
    if (row->from_is_list && used < cap) snprintf(buf + used, cap - used, "]");
}

static void print_table(const Graph *g) {
    printf("%3s %18s %3s %10s  %-12s %-34s %-16s %8s\n", "", "from", "n", "params", "module", "arguments", "output",
           "GFLOPs");
    for (int i = 0; i < g->n_layers; i++) {
        const Layer *l = &g->layers[i];
        char from[64], shape[48];
        format_from(l->row, from, sizeof from);
        snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)l->out_shape.c, (long long)l->out_shape.h,
                 (long long)l->out_shape.w);
        printf("%3d %18s %3lld %10lld  %-12s %-34s %-16s %8.3f\n", i, from, (long long)l->row->repeats,
               (long long)l->n_params, l->row->module, l->args_text, shape, 2.0 * l->ops / 1e9);
    }
    printf("%s summary: %lld layers, %lld parameters, %lld gradients, %.1f GFLOPs\n", g->spec->name,
           (long long)g->leaf_modules, (long long)g->param_elems, (long long)g->grad_elems, graph_gflops(g));
}

static void print_json(const Graph *g, int64_t imgsz) {
    printf("{\"model\": ");
    json_write_string(stdout, g->spec->name);
    printf(", \"imgsz\": %lld, \"layers\": [", (long long)imgsz);
    for (int i = 0; i < g->n_layers; i++) {
        const Layer *l = &g->layers[i];
        printf("%s{\"index\": %d, \"from\": [", i ? ", " : "", i);
        for (int k = 0; k < l->row->n_from; k++) printf("%s%lld", k ? ", " : "", (long long)l->row->from_written[k]);
        printf("], \"repeats\": %lld, \"params\": %lld, \"module\": ", (long long)l->row->repeats, (long long)l->n_params);
        json_write_string(stdout, l->row->module);
        printf(", \"args\": ");
        json_write_string(stdout, l->args_text);
        printf(", \"output\": [%lld, %lld, %lld], \"gflops\": %.6f}", (long long)l->out_shape.c,
               (long long)l->out_shape.h, (long long)l->out_shape.w, 2.0 * l->ops / 1e9);
    }
    printf("], \"n_layers\": %lld, \"parameters\": %lld, \"gradients\": %lld, \"gflops\": %.6f}\n",
           (long long)g->leaf_modules, (long long)g->param_elems, (long long)g->grad_elems, graph_gflops(g));
}

int cmd_info(int argc, char **argv) {
    InfoArgs args = {.imgsz = 640};
    int rc = cli_parse(&cmd_info_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
    // Ultralytics rounds the image size up to a multiple of the largest stride (32) with a warning.
    if (args.imgsz % 32) {
        int64_t rounded = (args.imgsz + 31) / 32 * 32;
        fprintf(stderr, "yolopipe info: --imgsz %lld is not a multiple of 32; using %lld\n", (long long)args.imgsz,
                (long long)rounded);
        args.imgsz = rounded;
    }
    Error err = {0};
    ModelSpec *spec = NULL;
    Graph *g = NULL;
    GraphOptions opt = {.batch = 1, .imgsz_h = args.imgsz, .imgsz_w = args.imgsz};
    if (!model_spec_load(args.model_path, &args.model, &spec, &err) || !graph_create(spec, &opt, &g, &err)) {
        fprintf(stderr, "%s\n", err.message);
        model_spec_destroy(spec);
        return YP_EXIT_USAGE;
    }
    // Said only once the model is known to be valid, so that an error is always the one line on stderr.
    if (spec->scale_defaulted)
        fprintf(stderr, "yolopipe: %s: no scale given, using the first one, '%s'\n", args.model_path, spec->scale);
    if (args.json) print_json(g, args.imgsz);
    else print_table(g);
    graph_destroy(g);
    model_spec_destroy(spec);
    return 0;
}
